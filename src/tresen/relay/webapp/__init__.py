"""The customer web app (``web/``), built by ``make web`` into ``dist/`` and served at ``/app/``.

The relay serves it from its own origin, so the app's strict Content-Security-Policy can name
``'self'`` for everything it loads and every connection it opens (HTTP and WebSocket alike).
"""
