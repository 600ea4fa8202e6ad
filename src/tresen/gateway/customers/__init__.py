"""The business's customers as persons: a copy of what the gateway holds about one, its
erasure on request, and the audit trail of such actions."""
