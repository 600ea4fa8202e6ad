"""The relay: accounts, devices, key directory and durable store-and-forward delivery."""
