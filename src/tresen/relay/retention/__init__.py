"""Retention: the periodic deletion of metadata the relay's rules no longer need."""
