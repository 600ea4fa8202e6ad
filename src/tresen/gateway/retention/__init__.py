"""Retention: the periodic deletion or reduction of what the gateway's rules no longer need."""
