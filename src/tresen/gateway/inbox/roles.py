"""What a person of the inbox may do: owner, admin or agent.

On its own so that the command line can offer the roles without loading the inbox's storage.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["Role"]


class Role(StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    AGENT = "agent"

    @property
    def manages(self) -> bool:
        """Settings, tokens and agents are for owners and admins only."""
        return self is not Role.AGENT
