"""The business gateway: a device of a business account on the business's own machines.

It holds the business's keys, keeps a connection to the relay, stores the business's
conversations in plaintext (they never leave its machines), and serves the WhatsApp Cloud
API's REST shapes and signed webhooks, so that existing integrations move by changing their
base URL.
"""
