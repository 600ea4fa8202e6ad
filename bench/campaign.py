"""A campaign to many subscribers at the highest throughput the operator allows: how long
until every recipient's message is accepted by the relay, and what it costs the gateway.

``tresen relay serve`` and ``tresen gateway serve`` run in child processes (SQLite). The relay
allows the business what an operator can allow at most (``business_throughput_max_mps``,
1,000 messages per second by default, and the top tier: no limit of new customers); the
platform rules stay on, so every send is checked for the customer's consent. Before anything
is timed, ``--subscribers`` customers are registered over the relay's HTTP API, each a device
with its own Olm identity keys (vodozemac) and a one-time key, and each signs its marketing
opt-in for the business. They are not online: what the campaign sends waits in their mailboxes
(as for customers whose phones are off).

Timed: ``POST /inbox/api/v1/campaigns/{id}/start`` until the campaign is done (the gateway
claimed a key of every recipient's device, started an Olm session, encrypted the template and
had the relay accept it, at the pace it reads from the relay). Reported: the time, messages
per second, the gateway's and the relay's CPU seconds and peak resident memory (sampled every
0.2 s).

    .venv/bin/python bench/campaign.py --subscribers 10000

Prints a table and writes ``bench/results/campaign.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from gateway_api import (
    BUSINESS_PHONE,
    UNLIMITED_RELAY,
    free_port,
    setup_gateway,
    start_gateway,
    start_relay,
    stop,
    wait_http,
)
from gateway_media import approve_template, cpu_s, memory_mib

from tresen.crypto.consent import new_statement, sign_statement
from tresen.crypto.olm import DeviceIdentity

RESULTS = Path(__file__).parent / "results"
MAX_MPS = 1_000
"""What an operator may allow a business at most (``business_throughput_max_mps``)."""
AT_ONCE = 64
"""Subscribers registered concurrently while preparing."""

TEMPLATE: dict[str, Any] = {
    "name": "weekly_offer",
    "language": "en",
    "category": "MARKETING",
    "components": [
        {
            "type": "BODY",
            "text": "Hello {{1}}, this week {{2}} is 20 % off.",
            "example": {"body_text": [["Anna", "coffee"]]},
        },
        {"type": "FOOTER", "text": "Reply STOP to stop offers"},
    ],
}


class Codes:
    """The relay's file SMS sender, read as it grows: phone → its latest code."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.codes: dict[str, str] = {}

    async def code(self, phone: str) -> str:
        for _ in range(2_000):
            if phone in self.codes:
                return self.codes.pop(phone)
            if self.path.exists():
                with self.path.open("rb") as file:
                    file.seek(self.offset)
                    chunk = file.read()
                complete = chunk[: chunk.rfind(b"\n") + 1]
                self.offset += len(complete)
                for line in complete.splitlines():
                    row = json.loads(line)
                    self.codes[row["phone"]] = row["code"]
            await asyncio.sleep(0.01)
        raise TimeoutError(f"no code for {phone}")


async def subscriber(http: httpx.AsyncClient, codes: Codes, phone: str, business: str) -> None:
    """One customer: registered, identity and one-time keys uploaded, marketing opt-in signed."""
    (await http.post("/v1/registration/code", json={"phone": phone})).raise_for_status()
    verified = await http.post(
        "/v1/registration/verify", json={"phone": phone, "code": await codes.code(phone)}
    )
    verified.raise_for_status()
    me = verified.json()
    auth = {"Authorization": f"Bearer {me['token']}"}
    identity = DeviceIdentity.create()
    [key] = identity.generate_one_time_keys(1)
    keys = {
        "identity_keys": {"curve25519": identity.curve25519, "ed25519": identity.ed25519},
        "one_time_keys": [
            {"key_id": key.key_id, "public_key": key.public_key, "signature": key.signature}
        ],
    }
    (await http.put("/v1/keys", json=keys, headers=auth)).raise_for_status()
    statement = new_statement(
        business_account=business,
        customer_account=me["account_id"],
        customer_phone=phone,
        scope="marketing",
        state="opted_in",
        at_ms=int(time.time() * 1000),
        device_id=me["device_id"],
        device_ed25519=identity.ed25519,
    )
    signed = sign_statement(identity, statement).to_json()
    answer = await http.post("/v1/consents", json={"statements": [signed]}, headers=auth)
    answer.raise_for_status()


def agent_token(folder: Path, relay_url: str) -> str:
    """An owner of the inbox and a personal access token of theirs (the gateway's CLI)."""
    env = {
        **os.environ,
        "TRESEN_GATEWAY_RELAY_URL": relay_url,
        "TRESEN_GATEWAY_PHONE": BUSINESS_PHONE,
        "COLUMNS": "200",
    }
    base = [sys.executable, "-m", "tresen", "gateway", "agents"]
    where = ["--data-dir", str(folder / "gateway")]
    subprocess.run(
        [*base, "add", "owner", "--name", "Owner", "--role", "owner", "--password-stdin", *where],
        input="Korrekt Pferd Batterie\n",
        text=True,
        check=True,
        env=env,
        capture_output=True,
    )
    made = subprocess.run(
        [*base, "token", "create", "owner", "--name", "bench", *where],
        text=True,
        check=True,
        env=env,
        capture_output=True,
    )
    tokens = [w for w in made.stdout.split() if w.startswith("tia_") or len(w) > 30]
    return tokens[-1]


async def run(subscribers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        relay_port, gateway_port = free_port(), free_port()
        relay_url = f"http://127.0.0.1:{relay_port}"
        relay = start_relay(
            folder,
            relay_port,
            None,
            {
                **UNLIMITED_RELAY,
                "TRESEN_POLICY__BUSINESS_THROUGHPUT_MPS": str(MAX_MPS),
                "TRESEN_POLICY__BUSINESS_THROUGHPUT_MAX_MPS": str(MAX_MPS),
                "TRESEN_POLICY__START_TIER": "4",
                "TRESEN_POLICY__VERIFIED_START_TIER": "4",
                "TRESEN_LIMITS__CODE_REQUESTS_PER_ADDRESS": "10000000",
                "TRESEN_LIMITS__CODE_ATTEMPTS_PER_ADDRESS": "10000000",
                "TRESEN_LIMITS__LOOKUPS_PER_HOUR": "10000000",
                "TRESEN_LIMITS__LOOKUP_BURST": "10000000",
            },
        )
        gateway = None
        try:
            await wait_http(relay_url, "/v1/health")
            api_token, _ = await setup_gateway(folder, relay_url, "sqlite")
            owner = agent_token(folder, relay_url)
            gateway = start_gateway(
                folder,
                relay_url,
                BUSINESS_PHONE,
                gateway_port,
                None,
                {"TRESEN_GATEWAY_CAMPAIGNS__DEVICE_RATE_PER_S": str(MAX_MPS)},
            )
            gateway_url = f"http://127.0.0.1:{gateway_port}"
            await wait_http(gateway_url, "/docs")
            async with httpx.AsyncClient(
                base_url=f"{gateway_url}/v23.0",
                headers={"Authorization": f"Bearer {api_token}"},
                timeout=60,
            ) as cloud:
                await approve_template(folder, relay_url, cloud, TEMPLATE)

            codes = Codes(folder / "sms.jsonl")
            async with httpx.AsyncClient(base_url=relay_url, timeout=60) as http:
                business = await business_account(http, codes)
            prepared = time.perf_counter()
            # The relay closes a keep-alive connection idle for 5 s: never reuse one that old.
            limits = httpx.Limits(max_connections=AT_ONCE, keepalive_expiry=2.0)
            async with httpx.AsyncClient(base_url=relay_url, timeout=60, limits=limits) as http:
                slots = asyncio.Semaphore(AT_ONCE)

                async def one(i: int) -> str:
                    # A connection lost mid-registration: the same person under another
                    # number (a used code cannot be verified again).
                    for prefix in ("152", "153", "155"):
                        phone = f"+49{prefix}{i:08d}"
                        try:
                            async with slots:
                                await subscriber(http, codes, phone, business)
                            return phone
                        except httpx.TransportError:
                            continue
                    raise RuntimeError(f"subscriber {i} could not be registered")

                phones = list(await asyncio.gather(*(one(i) for i in range(subscribers))))
            prepare_s = time.perf_counter() - prepared

            inbox = httpx.AsyncClient(
                base_url=f"{gateway_url}/inbox/api/v1",
                headers={"Authorization": f"Bearer {owner}"},
                timeout=120,
            )
            async with inbox:
                made = await inbox.post(
                    "/campaigns",
                    json={
                        "name": "Bench offer",
                        "template": TEMPLATE["name"],
                        "language": TEMPLATE["language"],
                        "audience": {"recipients": [{"phone": p} for p in phones]},
                        "components": [
                            {
                                "type": "body",
                                "parameters": [
                                    {"type": "text", "text": "there"},
                                    {"type": "text", "text": "coffee"},
                                ],
                            }
                        ],
                        "schedule": {"quiet_hours": []},
                    },
                )
                made.raise_for_status()
                campaign = made.json()["id"]
                print(
                    f"campaign start: {json.dumps({'gateway': gateway.pid, 'relay': relay.pid})}",
                    flush=True,
                )  # for attaching a profiler
                cpu0 = {"gateway": cpu_s(gateway.pid), "relay": cpu_s(relay.pid)}
                peak = {"gateway": 0.0, "relay": 0.0}
                started = time.perf_counter()
                (await inbox.post(f"/campaigns/{campaign}/start")).raise_for_status()
                materialised_s = time.perf_counter() - started
                while True:
                    shown = (await inbox.get(f"/campaigns/{campaign}")).json()
                    for name, pid in (("gateway", gateway.pid), ("relay", relay.pid)):
                        peak[name] = max(peak[name], memory_mib(pid)["VmRSS"])
                    if shown["state"] in ("done", "cancelled", "paused"):
                        break
                    await asyncio.sleep(0.2)
                elapsed = time.perf_counter() - started
                cpu = {
                    "gateway": cpu_s(gateway.pid) - cpu0["gateway"],
                    "relay": cpu_s(relay.pid) - cpu0["relay"],
                }
                results = (await inbox.get(f"/campaigns/{campaign}/results")).json()
        finally:
            if gateway is not None:
                stop(gateway)
            stop(relay)
    return {
        "subscribers": subscribers,
        "throughput_allowed_mps": MAX_MPS,
        "prepare_s": round(prepare_s, 1),
        "start_s": round(materialised_s, 2),
        "elapsed_s": round(elapsed, 2),
        "messages_per_s": round(results["sent"] / elapsed, 1),
        "sent": results["sent"],
        "failed": results["failed"],
        "opted_out": results["opted_out"],
        "state": shown["state"],
        "cpu_s": {k: round(v, 1) for k, v in cpu.items()},
        "cpu_ms_per_message": {
            k: round(1000 * v / max(1, results["sent"]), 2) for k, v in cpu.items()
        },
        "peak_rss_mib": {k: round(v, 1) for k, v in peak.items()},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
    }


async def business_account(http: httpx.AsyncClient, codes: Codes) -> str:
    """The business's account id, looked up by its number as any customer's app does."""
    scout = "+4915199999999"
    (await http.post("/v1/registration/code", json={"phone": scout})).raise_for_status()
    verified = await http.post(
        "/v1/registration/verify", json={"phone": scout, "code": await codes.code(scout)}
    )
    verified.raise_for_status()
    found = await http.get(
        "/v1/accounts",
        params={"phone": BUSINESS_PHONE},
        headers={"Authorization": f"Bearer {verified.json()['token']}"},
    )
    found.raise_for_status()
    return str(found.json()["account_id"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    args = parser.parse_args()
    figures = asyncio.run(run(args.subscribers))
    rows = [
        ("subscribers", figures["subscribers"]),
        ("throughput allowed (msg/s)", figures["throughput_allowed_mps"]),
        ("preparing subscribers (s)", figures["prepare_s"]),
        ("start: recipients resolved (s)", figures["start_s"]),
        ("campaign done (s)", figures["elapsed_s"]),
        ("messages per second", figures["messages_per_s"]),
        (
            "sent / failed / opted out",
            f"{figures['sent']} / {figures['failed']} / {figures['opted_out']}",
        ),
        (
            "gateway CPU s (ms per message)",
            f"{figures['cpu_s']['gateway']} ({figures['cpu_ms_per_message']['gateway']})",
        ),
        (
            "relay CPU s (ms per message)",
            f"{figures['cpu_s']['relay']} ({figures['cpu_ms_per_message']['relay']})",
        ),
        ("gateway peak RSS (MiB)", figures["peak_rss_mib"]["gateway"]),
        ("relay peak RSS (MiB)", figures["peak_rss_mib"]["relay"]),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "campaign.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"written {out}")


if __name__ == "__main__":
    main()
