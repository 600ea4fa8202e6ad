"""``tresen chat``: the customer's end-to-end encrypted chat, interactive or scriptable.

Without a subcommand (or with ``open``) it starts the terminal app; ``register``, ``send``,
``listen``, ``choose``, ``chats``, ``read``, ``name``, ``contacts``, ``safety``, ``trust``,
``business``, ``businesses``, ``consents``, ``revoke``, ``optin``, ``optout``, ``block``,
``unblock``, ``report``, ``export`` and ``delete-account`` do one thing each and suit
scripts: results go to standard output (``--json`` for machines), explanations and errors to
standard error.

Exit codes: 0 done, 1 an error (the relay's code and message, or what is missing), 2 a usage
error, 3 a peer's identity keys changed (compare safety numbers, then ``trust``), 4 ``listen``
timed out before ``--count`` messages arrived.
"""

from __future__ import annotations

# The command modules register their commands on ``app`` as they are imported, and
# ``--help`` lists them in that order.
# isort: off
from tresen.cli.chat import messages, directory, rules, account

# isort: on
from tresen.cli.chat.runner import EXIT_IDENTITY_CHANGED, EXIT_TIMED_OUT, app, default_data_dir

__all__ = [
    "EXIT_IDENTITY_CHANGED",
    "EXIT_TIMED_OUT",
    "account",
    "app",
    "default_data_dir",
    "directory",
    "messages",
    "rules",
]
