"""Verifiable bills: the customers' signed delivery receipts the gateway keeps, and the
reconciliation of the operator's monthly statement against them (``tresen gateway billing
verify``, the inbox's bills report)."""
