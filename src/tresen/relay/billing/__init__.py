"""Billing: the operator's rate cards, per-business overrides, and monthly statements from the
append-only ledger that delivery writes (``relay/policy``)."""
