"""Encrypted attachments: the relay's blob store of opaque ciphertext."""
