"""Accounts, devices, phone-number registration and device tokens."""
