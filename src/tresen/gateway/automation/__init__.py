"""Automation in the gateway: greeting and away messages, the FAQ bot, its actions and hand-over."""
