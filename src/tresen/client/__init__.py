"""The client SDK (``Client``), its local store and the customer's terminal app."""

from tresen.client.sdk import Client

__all__ = ["Client"]
