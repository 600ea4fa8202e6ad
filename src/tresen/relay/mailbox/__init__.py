"""Per-device mailboxes: durable store-and-forward delivery of ciphertext envelopes."""
