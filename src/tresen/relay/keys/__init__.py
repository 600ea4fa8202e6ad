"""The key directory: device identity keys, signed one-time keys and fallback keys."""
