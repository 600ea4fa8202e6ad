"""The operator: signing key, verified-business certificates, revocations and the admin API."""
