"""Registration cannot be turned against a number's owner: limits count per (number, source)
and per source, and the source is the socket peer unless that is a trusted proxy.

These relays run as ``tresen relay serve`` runs them (uvicorn's own proxy handling off), on
127.0.0.1; the clients' sources are named by X-Forwarded-For where the test trusts the peer.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.datastructures import Headers
from support import Backend

from tresen.cli.common import start_server
from tresen.core.clock import ManualClock
from tresen.core.errors import ErrorCode
from tresen.core.http import tls_context
from tresen.core.settings import Settings
from tresen.relay.accounts.limits import backoff_wait_ms, take_lookup, window_wait_ms
from tresen.relay.accounts.sms import read_last_code
from tresen.relay.accounts.source import client_source
from tresen.relay.app import build_app

VICTIM = "203.0.113.10"
ATTACKER = "198.51.100.66"


class Relay:
    def __init__(self, url: str, sms_file: Path) -> None:
        self.http = httpx.AsyncClient(verify=tls_context(), base_url=url, timeout=30)
        self.sms_file = sms_file

    async def request_code(self, phone: str, source: str | None = None) -> httpx.Response:
        return await self.http.post(
            "/v1/registration/code", json={"phone": phone}, headers=_from(source)
        )

    async def verify(self, phone: str, code: str, source: str | None = None) -> httpx.Response:
        return await self.http.post(
            "/v1/registration/verify", json={"phone": phone, "code": code}, headers=_from(source)
        )

    def last_code(self, phone: str) -> str:
        code = read_last_code(self.sms_file, phone)
        assert code is not None
        return code


def _from(source: str | None) -> dict[str, str]:
    return {} if source is None else {"X-Forwarded-For": source}


@contextlib.asynccontextmanager
async def served(
    backend: Backend, tmp_path: Path, clock: ManualClock, **overrides: Any
) -> AsyncIterator[Relay]:
    sms_file = tmp_path / f"sms-{secrets.token_hex(4)}.jsonl"
    settings = Settings(
        data_dir=tmp_path,
        sms_sender="file",
        sms_file=sms_file,
        **backend.settings_overrides(),
        **overrides,
    )
    app = build_app(settings, clock=clock, db=backend.database())
    server, task, url = await start_server(app, "127.0.0.1", 0)
    relay = Relay(url, sms_file)
    try:
        yield relay
    finally:
        await relay.http.aclose()
        server.should_exit = True
        await task


def phone() -> str:
    return f"+49151{secrets.randbelow(10**8):08d}"


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


# --- an attacker against a number's owner ----------------------------------------------------


async def test_an_attacker_cannot_stop_the_owner_from_registering(
    backend: Backend, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with served(backend, tmp_path, clock, trusted_proxies=["127.0.0.1"]) as relay:
        victim = phone()
        # The attacker asks for codes for the victim's number until refused, and guesses.
        answers = []
        for _ in range(10):
            answers.append((await relay.request_code(victim, ATTACKER)).status_code)
            for _ in range(3):
                answers.append((await relay.verify(victim, "000000", ATTACKER)).status_code)
            clock.advance(seconds=29)
        assert 429 in answers

        # The owner asks from their own network: a code arrives, and it works.
        r = await relay.request_code(victim, VICTIM)
        assert r.status_code == 202, r.text
        code = relay.last_code(victim)
        r = await relay.verify(victim, code, VICTIM)
        assert r.status_code == 200, r.text
        assert r.json()["new_account"] is True


async def test_wrong_guesses_from_elsewhere_leave_the_owners_code_valid(
    backend: Backend, tmp_path: Path
) -> None:
    clock = ManualClock()
    async with served(backend, tmp_path, clock, trusted_proxies=["127.0.0.1"]) as relay:
        victim = phone()
        assert (await relay.request_code(victim, VICTIM)).status_code == 202
        code = relay.last_code(victim)

        # The attacker's guesses use up the attacker's attempts only...
        for _ in range(5):
            r = await relay.verify(victim, wrong(code), ATTACKER)
            assert r.json()["error"]["code"] == ErrorCode.CODE_INCORRECT
        r = await relay.verify(victim, code, ATTACKER)
        assert r.status_code == 429
        assert r.json()["error"]["code"] == ErrorCode.CODE_ATTEMPTS_EXCEEDED
        # ...and asking for another code re-sends the owner's, it does not replace it.
        assert (await relay.request_code(victim, ATTACKER)).status_code == 202
        assert relay.last_code(victim) == code

        # One typo by the owner still leaves four attempts, and the code works.
        r = await relay.verify(victim, wrong(code), VICTIM)
        assert r.json()["error"]["details"]["attempts_left"] == 4
        r = await relay.verify(victim, code, VICTIM)
        assert r.status_code == 200, r.text


async def test_sources_are_limited_across_numbers(backend: Backend, tmp_path: Path) -> None:
    clock = ManualClock()
    limits = {"code_requests_per_address": 3, "code_attempts_per_address": 4}
    async with served(
        backend, tmp_path, clock, trusted_proxies=["127.0.0.1"], limits=limits
    ) as relay:
        numbers = [phone() for _ in range(4)]
        for number in numbers[:3]:
            assert (await relay.request_code(number, ATTACKER)).status_code == 202
        r = await relay.request_code(numbers[3], ATTACKER)
        assert r.status_code == 429
        error = r.json()["error"]
        assert error["code"] == ErrorCode.REGISTRATION_RATE_LIMITED
        assert error["details"] == {"scope": "addr", "retry_after_s": 3600}
        assert r.headers["Retry-After"] == "3600"
        # Other sources are not affected.
        assert (await relay.request_code(numbers[3], VICTIM)).status_code == 202

        # Four wrong codes spread over numbers: the source may not guess any more.
        for number in numbers[:3] + numbers[:1]:
            r = await relay.verify(number, wrong(relay.last_code(number)), ATTACKER)
            assert r.json()["error"]["code"] == ErrorCode.CODE_INCORRECT
        clock.advance(minutes=1)
        r = await relay.verify(numbers[1], relay.last_code(numbers[1]), ATTACKER)
        assert r.status_code == 429
        error = r.json()["error"]
        assert error["code"] == ErrorCode.CODE_ATTEMPTS_EXCEEDED
        assert error["details"] == {"scope": "addr", "retry_after_s": 3540}
        assert r.headers["Retry-After"] == "3540"
        r = await relay.verify(numbers[1], relay.last_code(numbers[1]), VICTIM)
        assert r.status_code == 200, r.text


async def test_repeated_requests_back_off_exponentially(backend: Backend, tmp_path: Path) -> None:
    clock = ManualClock()
    limits = {"code_requests_per_number": 10, "code_request_backoff_s": 30}
    async with served(
        backend, tmp_path, clock, trusted_proxies=["127.0.0.1"], limits=limits
    ) as relay:
        number = phone()
        waits = []
        assert (await relay.request_code(number, ATTACKER)).status_code == 202
        for _ in range(4):
            r = await relay.request_code(number, ATTACKER)
            assert r.status_code == 429
            error = r.json()["error"]
            assert error["code"] == ErrorCode.REGISTRATION_RATE_LIMITED
            assert error["details"]["scope"] == "backoff"
            wait = error["details"]["retry_after_s"]
            assert r.headers["Retry-After"] == str(wait)
            waits.append(wait)
            clock.advance(seconds=wait - 1)
            assert (await relay.request_code(number, ATTACKER)).status_code == 429
            clock.advance(seconds=1)
            assert (await relay.request_code(number, ATTACKER)).status_code == 202
        assert waits == [30, 60, 120, 240]
        # The back-off is the attacker's own: the owner's first request goes through.
        assert (await relay.request_code(number, VICTIM)).status_code == 202


# --- which address is the source -------------------------------------------------------------


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored(
    backend: Backend, tmp_path: Path
) -> None:
    clock = ManualClock()
    limits = {"code_requests_per_address": 2}
    async with served(backend, tmp_path, clock, limits=limits) as relay:
        # Each request claims another client; all of them are the peer, 127.0.0.1.
        sources = ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        answers = [(await relay.request_code(phone(), s)).status_code for s in sources]
        assert answers == [202, 202, 429]
        r = await relay.http.post(
            "/v1/registration/code", json={"phone": phone()}, headers={"Forwarded": "for=192.0.2.9"}
        )
        assert r.status_code == 429


async def test_forwarded_headers_from_a_trusted_proxy_name_the_client(
    backend: Backend, tmp_path: Path
) -> None:
    clock = ManualClock()
    limits = {"code_requests_per_address": 2}
    async with served(
        backend, tmp_path, clock, trusted_proxies=["127.0.0.0/8"], limits=limits
    ) as relay:
        for _ in range(2):
            assert (await relay.request_code(phone(), "192.0.2.1")).status_code == 202
        assert (await relay.request_code(phone(), "192.0.2.1")).status_code == 429
        # A client that prepends an address of its own choosing is still itself.
        assert (await relay.request_code(phone(), "10.9.9.9, 192.0.2.1")).status_code == 429
        assert (await relay.request_code(phone(), "192.0.2.2")).status_code == 202


@pytest.mark.parametrize(
    ("peer", "headers", "trusted", "source"),
    [
        ("192.0.2.1", {"x-forwarded-for": "203.0.113.5"}, [], "192.0.2.1"),
        ("10.0.0.2", {"x-forwarded-for": "203.0.113.5"}, ["10.0.0.0/8"], "203.0.113.5"),
        (
            "10.0.0.2",
            {"x-forwarded-for": "1.1.1.1, 203.0.113.5, 10.0.0.7"},
            ["10.0.0.0/8"],
            "203.0.113.5",
        ),
        ("10.0.0.2", {"x-forwarded-for": "10.0.0.9"}, ["10.0.0.0/8"], "10.0.0.9"),
        ("10.0.0.2", {"x-forwarded-for": "garbage"}, ["10.0.0.0/8"], "10.0.0.2"),
        ("10.0.0.2", {}, ["10.0.0.0/8"], "10.0.0.2"),
        (
            "10.0.0.2",
            {"forwarded": 'for="[2001:db8::1]:4711";proto=https'},
            ["10.0.0.2"],
            "2001:db8::1",
        ),
        (
            "10.0.0.2",
            {"forwarded": "for=192.0.2.60:80, for=10.0.0.3"},
            ["10.0.0.0/8"],
            "192.0.2.60",
        ),
        ("10.0.0.2", {"forwarded": "for=unknown"}, ["10.0.0.0/8"], "10.0.0.2"),
        ("::ffff:10.0.0.2", {"x-forwarded-for": "203.0.113.5"}, ["10.0.0.0/8"], "203.0.113.5"),
        ("fd00::1", {"x-forwarded-for": "203.0.113.5"}, ["fd00::/8"], "203.0.113.5"),
        (None, {"x-forwarded-for": "203.0.113.5"}, ["10.0.0.0/8"], "unknown"),
    ],
    ids=[
        "untrusted-peer",
        "trusted-proxy",
        "spoofed-prefix",
        "all-trusted",
        "unreadable",
        "no-header",
        "forwarded-ipv6",
        "forwarded-chain",
        "forwarded-unknown",
        "mapped-peer",
        "ipv6-proxy",
        "no-peer",
    ],
)
def test_client_source(
    peer: str | None, headers: dict[str, str], trusted: list[str], source: str
) -> None:
    assert client_source(peer, Headers(headers), trusted) == source


def test_trusted_proxies_must_be_addresses_or_networks() -> None:
    assert Settings(trusted_proxies=["10.0.0.1", "fd00::/8"]).trusted_proxies
    with pytest.raises(ValueError, match="not an IP address or CIDR"):
        Settings(trusted_proxies=["proxy.example"])


# --- the rules as numbers --------------------------------------------------------------------


def test_window_and_backoff_rules() -> None:
    assert window_wait_ms([], 1000, 600, 1) == 0
    assert window_wait_ms([100, 200], 300, 600, 3) == 0
    assert window_wait_ms([100, 200, 300], 300, 600, 3) == 400  # until 100 leaves
    assert window_wait_ms([100, 200, 300], 700, 600, 3) == 0
    assert backoff_wait_ms([], 0, 3600, 30, 900) == 0
    assert backoff_wait_ms([0], 10, 3600, 30, 900) == 20
    assert backoff_wait_ms([0, 30, 90], 90, 3600, 30, 900) == 120
    assert backoff_wait_ms(list(range(40)), 39, 3600, 30, 900) == 900  # capped
    assert backoff_wait_ms([0, 30], 30, 3600, 0, 900) == 0  # off


def test_lookup_budget_rule() -> None:
    tat = None
    for _ in range(3):
        tat, wait = take_lookup(tat, 0, 1000, 3)
        assert wait == 0
    assert take_lookup(tat, 0, 1000, 3) == (None, 1000)
    assert take_lookup(tat, 1000, 1000, 3) == (4000, 0)  # one refilled
