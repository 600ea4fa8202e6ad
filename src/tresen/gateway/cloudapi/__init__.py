"""The WhatsApp Cloud API served by the gateway: routes, request shapes, errors, events."""
