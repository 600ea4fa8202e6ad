"""The customer web app's cold load: what a first visit to ``/app/`` costs in a browser.

Starts ``tresen relay serve`` in a child process (SQLite in a temporary folder; or measures a
running relay with ``--url``) and loads ``/app/`` ``--runs`` times in Debian's headless
Chromium, each time in a new browser context (empty cache, no storage), over the loopback and
over a throttled network (``--networks``: ``loopback``, ``slow4g`` = 150 ms round trip,
1.6 Mbit/s down, 750 kbit/s up, as Chromium's DevTools emulate it), as a browser normally asks
(``gzip``: the relay sends its files gzipped) and without compression (``identity``), for the
difference (``--encodings``). Per load, from the start of the navigation:

- ``interactive``: until the app marks ``<html data-ready="1">`` (its own
  ``window.__tresenReadyMs`` when it records one, else the moment the attribute is set); a
  build that never sets it within ``--ready-timeout`` seconds is reported without it;
- ``rendered``: until the app first puts an element into ``#root``;
- ``DOMContentLoaded`` and ``load`` (navigation timing), and ``last byte``: when the last
  file the page fetched by then had arrived (Olm's WebAssembly, which the app fetches after
  ``load``);
- the bytes transferred (navigation and resource timing: headers and bodies as sent) and the
  number of requests.

Also the build's sizes from the dist folder (JS, CSS, WASM, the rest), raw and gzip -9.
Prints tables (median and p90 over the runs) and writes ``bench/results/webapp.json``.

    make web && .venv/bin/python bench/webapp.py --runs 20
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gzip
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
from playwright.async_api import Browser, async_playwright
from playwright.async_api import TimeoutError as PlaywrightTimeout

from tresen.relay.webapp.files import BUNDLED_DIST

RESULTS = Path(__file__).with_name("results") / "webapp.json"
CHROMIUM = Path("/usr/bin/chromium")
NETWORKS: dict[str, dict[str, Any] | None] = {
    "loopback": None,
    "slow4g": {
        "offline": False,
        "latency": 150,
        "downloadThroughput": 1.6 * 1024 * 1024 / 8,
        "uploadThroughput": 750 * 1024 / 8,
    },
}

# Runs before the app's own scripts: notes when #root first gets an element and when
# <html> gets data-ready="1", in the page's clock (performance.now(), 0 = navigation start).
OBSERVE = """
(() => {
  const marks = (window.__benchMarks = {});
  const look = () => {
    const root = document.getElementById("root");
    if (marks.rendered === undefined && root && root.firstElementChild) {
      marks.rendered = performance.now();
    }
    if (marks.ready === undefined && document.documentElement.dataset.ready === "1") {
      marks.ready = performance.now();
    }
  };
  new MutationObserver(look).observe(document, {
    subtree: true, childList: true, attributes: true, attributeFilter: ["data-ready"],
  });
})();
"""

TIMINGS = """() => {
  const [nav] = performance.getEntriesByType("navigation");
  const resources = performance.getEntriesByType("resource");
  const entries = [nav, ...resources];
  return {
    dcl: nav.domContentLoadedEventEnd,
    load: nav.loadEventEnd,
    last: Math.max(...entries.map((e) => e.responseEnd)),
    transferred: entries.reduce((sum, e) => sum + e.transferSize, 0),
    encoded: entries.reduce((sum, e) => sum + e.encodedBodySize, 0),
    decoded: entries.reduce((sum, e) => sum + e.decodedBodySize, 0),
    requests: entries.length,
    rendered: window.__benchMarks.rendered ?? null,
    ready: window.__tresenReadyMs ?? window.__benchMarks.ready ?? null,
  };
}"""

METRICS = (
    ("interactive", "ready", "ms"),
    ("rendered", "rendered", "ms"),
    ("DOMContentLoaded", "dcl", "ms"),
    ("load", "load", "ms"),
    ("last byte", "last", "ms"),
    ("transferred", "transferred", "bytes"),
    ("body (as sent)", "encoded", "bytes"),
    ("requests", "requests", ""),
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def relay(folder: Path) -> Iterator[str]:
    """``tresen relay serve`` on a free port, SQLite in ``folder``."""
    port = free_port()
    env = {**os.environ, "TRESEN_DATA_DIR": str(folder), "TRESEN_LOG_LEVEL": "warning"}
    log = (folder / "relay.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "tresen", "relay", "serve", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((folder / "relay.log").read_text())
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/v1/health").status_code == 200:
                    break
            time.sleep(0.05)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    if not CHROMIUM.exists():
        raise SystemExit(f"needs Debian's chromium package ({CHROMIUM}): apt-get install chromium")
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            headless=True,
            args=["--no-sandbox", "--disable-dev-shm-usage"],
        )
        try:
            yield browser
        finally:
            await browser.close()


async def cold_load(
    browser: Browser,
    url: str,
    network: dict[str, Any] | None,
    ready_timeout_s: float | None,
    encoding: str = "gzip",
) -> dict[str, Any]:
    """One first visit in a new context; ``ready_timeout_s`` None: do not wait for data-ready."""
    context = await browser.new_context(
        viewport={"width": 390, "height": 844},
        extra_http_headers={"Accept-Encoding": "identity"} if encoding == "identity" else None,
    )
    try:
        await context.add_init_script(OBSERVE)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        if network is not None:
            cdp = await context.new_cdp_session(page)
            await cdp.send("Network.enable")
            await cdp.send("Network.emulateNetworkConditions", network)
        await page.goto(f"{url}/app/", wait_until="load", timeout=120_000)
        await page.wait_for_function(
            "() => window.__benchMarks.rendered !== undefined", timeout=120_000
        )
        if ready_timeout_s is not None:
            with contextlib.suppress(PlaywrightTimeout):
                await page.wait_for_function(
                    "() => window.__tresenReadyMs !== undefined || "
                    "window.__benchMarks.ready !== undefined",
                    timeout=ready_timeout_s * 1000,
                )
        # Resources the app fetches after load (Olm's WebAssembly) have their timing too.
        await page.wait_for_load_state("networkidle")
        sample: dict[str, Any] = await page.evaluate(TIMINGS)
        sample["errors"] = errors
        return sample
    finally:
        await context.close()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.9))]
    return {"median": round(statistics.median(ordered), 1), "p90": round(p90, 1)}


async def measure(
    url: str, runs: int, networks: list[str], encodings: list[str], ready_timeout_s: float
) -> tuple[list[dict[str, Any]], str]:
    results = []
    async with chromium() as browser:
        version = browser.version
        # The first load also warms the relay (and tells whether the app marks data-ready).
        first = await cold_load(browser, url, None, ready_timeout_s)
        marks_ready = first["ready"] is not None
        for name, encoding in ((n, e) for n in networks for e in encodings):
            samples = [
                await cold_load(
                    browser,
                    url,
                    NETWORKS[name],
                    ready_timeout_s if marks_ready else None,
                    encoding,
                )
                for _ in range(runs)
            ]
            figures: dict[str, Any] = {}
            for _, key, _ in METRICS:
                values = [s[key] for s in samples if s[key] is not None]
                figures[key] = summary(values) if len(values) == len(samples) else None
            results.append(
                {
                    "network": name,
                    "encoding": encoding,
                    "runs": runs,
                    **figures,
                    "errors": sorted({e for s in samples for e in s["errors"]}),
                    "samples": samples,
                }
            )
    return results, version


def bundle(dist: Path) -> dict[str, dict[str, int]]:
    """Bytes of the build by kind, raw and gzip -9."""
    kinds: dict[str, dict[str, int]] = {}
    for path in sorted(p for p in dist.rglob("*") if p.is_file()):
        kind = {".js": "js", ".css": "css", ".wasm": "wasm"}.get(path.suffix, "other")
        data = path.read_bytes()
        entry = kinds.setdefault(kind, {"files": 0, "raw": 0, "gzip": 0})
        entry["files"] += 1
        entry["raw"] += len(data)
        entry["gzip"] += len(gzip.compress(data, compresslevel=9, mtime=0))
    kinds["total"] = {key: sum(kinds[k][key] for k in kinds) for key in ("files", "raw", "gzip")}
    return kinds


def kib(value: float) -> str:
    return f"{value / 1024:.1f} KiB"


def print_tables(sizes: dict[str, dict[str, int]], loads: list[dict[str, Any]]) -> None:
    print(f"{'build':8} {'files':>5} {'raw':>12} {'gzip -9':>12}")
    for kind, entry in sizes.items():
        print(f"{kind:8} {entry['files']:>5} {kib(entry['raw']):>12} {kib(entry['gzip']):>12}")
    print()
    for load in loads:
        title = f"{load['network']}, {load['encoding']} ({load['runs']} cold loads)"
        print(f"{title:36} {'median':>10} {'p90':>10}")
        for label, key, unit in METRICS:
            figure = load[key]
            if figure is None:
                print(f"  {label:34} {'—':>10} {'—':>10}")
                continue
            show = kib if unit == "bytes" else (lambda v: f"{v:.0f} ms") if unit else "{:g}".format
            print(f"  {label:34} {show(figure['median']):>10} {show(figure['p90']):>10}")
        for error in load["errors"]:
            print(f"  page error: {error}")
        print()


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="cold loads per network")
    parser.add_argument("--networks", default="loopback,slow4g", help=", ".join(NETWORKS))
    parser.add_argument("--encodings", default="gzip,identity", help="gzip, identity")
    parser.add_argument("--url", help="a running relay (default: start one)")
    parser.add_argument("--dist", type=Path, default=BUNDLED_DIST, help="the build to size")
    parser.add_argument("--ready-timeout", type=float, default=15.0, help="seconds")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    networks = [n for n in args.networks.split(",") if n]
    encodings = [e for e in args.encodings.split(",") if e]
    unknown = set(networks) - set(NETWORKS) | set(encodings) - {"gzip", "identity"}
    if unknown:
        parser.error(f"unknown networks or encodings: {', '.join(sorted(unknown))}")
    if not (args.dist / "index.html").is_file():
        raise SystemExit(f"the web app is not built ({args.dist}): run make web")

    sizes = bundle(args.dist)
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(
            relay(Path(stack.enter_context(tempfile.TemporaryDirectory())))
        )
        loads, version = asyncio.run(
            measure(url, args.runs, networks, encodings, args.ready_timeout)
        )
    print_tables(sizes, loads)
    payload = {
        "cpus": os.cpu_count(),
        "chromium": version,
        "bundle": sizes,
        "loads": loads,
    }
    args.out.parent.mkdir(exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
