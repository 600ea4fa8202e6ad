"""The security headers of every response under ``/app``.

The app is the only thing that ever holds a customer's keys and plaintext, so its page may
run nothing but its own files: no inline script or style, no other origin, no framing. The
headers are added by a middleware rather than by the routes, so that an answer the routes do
not make (405 for a POST, the error envelope) carries them too.
"""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CONTENT_SECURITY_POLICY", "PERMISSIONS_POLICY", "SECURITY_HEADERS", "WebAppHeaders"]

CONTENT_SECURITY_POLICY = "; ".join(
    (
        "default-src 'none'",
        # Olm is WebAssembly: compiling it needs 'wasm-unsafe-eval', which allows no eval().
        "script-src 'self' 'wasm-unsafe-eval'",
        "style-src 'self'",
        # Pictures and voice notes are decrypted in the page and shown from blob: URLs;
        # thumbnails travel inside messages and are shown as data: URLs.
        "img-src 'self' blob: data:",
        "media-src 'self' blob:",
        # 'self' covers the relay's WebSocket (ws: / wss: on the same host and port).
        "connect-src 'self'",
        "manifest-src 'self'",
        "worker-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    )
)

# Camera and microphone for photos and voice notes taken in the app; nothing else.
PERMISSIONS_POLICY = ", ".join(
    (
        "accelerometer=()",
        "autoplay=(self)",
        "camera=(self)",
        "display-capture=()",
        "encrypted-media=()",
        "fullscreen=(self)",
        "geolocation=()",
        "gyroscope=()",
        "hid=()",
        "magnetometer=()",
        "microphone=(self)",
        "midi=()",
        "payment=()",
        "picture-in-picture=()",
        "publickey-credentials-get=()",
        "screen-wake-lock=()",
        "serial=()",
        "usb=()",
        "xr-spatial-tracking=()",
    )
)

SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": PERMISSIONS_POLICY,
}

PREFIX = "/app"


class WebAppHeaders:
    """Adds :data:`SECURITY_HEADERS` to every HTTP response whose path is ``/app`` or
    below; other paths pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
