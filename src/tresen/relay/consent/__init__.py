"""Consent: customer-signed opt-ins and revocations per business and scope, business-attested
utility opt-ins, the customer's dashboard and the verifiable records."""
