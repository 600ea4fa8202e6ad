"""An HTTP client that uses the inbox's pages as a browser does: its cookies, its forms and
their CSRF tokens."""

from __future__ import annotations

import asyncio
import re
from http.cookies import SimpleCookie
from urllib.parse import parse_qs, urlsplit

import httpx
from argon2 import PasswordHasher

from tresen.core.http import tls_context

__all__ = ["FAST", "PASSWORD", "Browser", "notice", "thread_of"]

FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
PASSWORD = "Korrekt Pferd Batterie"


class Browser:
    """An HTTP client that keeps the inbox's cookies as a browser on 127.0.0.1 does (a
    browser sends Secure cookies to 127.0.0.1; Python's cookie jar would not)."""

    def __init__(self, base: str) -> None:
        self.http = httpx.AsyncClient(
            verify=tls_context(), base_url=base, follow_redirects=False, timeout=30
        )
        self.cookies: dict[str, str] = {}
        self.set_cookie_headers: list[str] = []

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: object
    ) -> httpx.Response:
        header = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        response = await self.http.request(
            method,
            path,
            headers={**(headers or {}), **({"Cookie": header} if header else {})},
            **kwargs,  # type: ignore[arg-type]
        )
        for raw in response.headers.get_list("set-cookie"):
            self.set_cookie_headers.append(raw)
            for name, morsel in SimpleCookie(raw).items():
                if morsel["max-age"] == "0" or not morsel.value or morsel.value == '""':
                    self.cookies.pop(name, None)
                else:
                    self.cookies[name] = morsel.value
        return response

    async def get(self, path: str) -> httpx.Response:
        return await self.request("GET", path)

    async def post(self, path: str, data: dict[str, str]) -> httpx.Response:
        return await self.request("POST", path, data=data)

    async def csrf(self, path: str) -> str:
        page = await self.get(path)
        assert page.status_code == 200, page.text
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None, page.text
        return found.group(1)

    async def sign_in(self, username: str, password: str = PASSWORD) -> httpx.Response:
        token = await self.csrf("/inbox/login")
        return await self.post(
            "/inbox/login", {"csrf": token, "username": username, "password": password}
        )

    async def close(self) -> None:
        await self.http.aclose()


async def thread_of(browser: Browser, contact: str, until: str, within_s: float = 20) -> str:
    """The thread page of ``contact`` once ``until`` shows in it."""
    deadline = asyncio.get_running_loop().time() + within_s
    while True:
        page = await browser.get(f"/inbox/c/{contact}")
        if page.status_code == 200 and until in page.text:
            return page.text
        assert asyncio.get_running_loop().time() < deadline, page.text
        await asyncio.sleep(0.05)


def notice(response: httpx.Response) -> str:
    """The notice a form's redirect carries back to the page."""
    assert response.status_code == 303, response.text
    return parse_qs(urlsplit(response.headers["location"]).query).get("notice", [""])[0]
