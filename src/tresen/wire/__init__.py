"""Typed, versioned wire formats: the relay protocol and (later) the end-to-end payloads."""
