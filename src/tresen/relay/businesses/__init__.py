"""Business accounts: profiles, lookalike-proof names, verification requests, directory."""
