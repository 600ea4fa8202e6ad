"""Key transparency: the signed, append-only log of device keys and certificates."""
