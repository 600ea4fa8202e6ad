"""The relay's logs in production form: one JSON object per line, with time, level, component
and event, and without the phone numbers of the people who register; the development SMS
sender that logs numbers and codes refuses to run on a relay others can reach."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import structlog
from support import Backend, serve_relay

from tresen.core.logging import configure_logging
from tresen.core.settings import Settings
from tresen.relay.app import build_app
from tresen.relay.context import ConsoleSmsRefused
from tresen.wire import relay as wire


@pytest.fixture
def json_logs() -> Iterator[io.StringIO]:
    """Logs configured as in production (``log_format = "json"``) into a buffer; the
    configuration is put back afterwards."""
    saved = structlog.get_config()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    stream = io.StringIO()
    configure_logging("info", "json", stream=stream)
    try:
        yield stream
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


async def test_json_log_lines_parse_and_name_no_phone_number(
    json_logs: io.StringIO, tmp_path: Path
) -> None:
    backend = Backend("sqlite", f"sqlite+aiosqlite:///{tmp_path / 'relay.db'}")
    async with serve_relay(backend, tmp_path) as relay:
        device = await relay.register()
        client = await relay.connect(device)
        await client.send(wire.Ping(nonce=1))
        await client.expect(wire.Pong)
        await client.close()
        logging.getLogger("asyncio").warning("a line of a library")

    lines = json_logs.getvalue().splitlines()
    records = [json.loads(line) for line in lines]
    events = {r["event"] for r in records}
    assert {"registration code requested", "device registered"} <= events
    for record in records:
        assert datetime.fromisoformat(record["timestamp"]).utcoffset() is not None
        assert record["level"] in {"debug", "info", "warning", "error", "critical"}
        assert record["logger"]
    assert {"tresen.relay.accounts", "asyncio"} <= {r["logger"] for r in records}
    text = json_logs.getvalue()
    assert device.phone not in text
    assert device.phone.lstrip("+") not in text
    assert device.token not in text
    # Connections are not an online-presence record at info level.
    assert "device connected" not in events


def test_the_console_sms_sender_refuses_a_relay_others_can_reach(tmp_path: Path) -> None:
    reachable = Settings(data_dir=tmp_path, host="0.0.0.0", sms_sender="console")
    with pytest.raises(ConsoleSmsRefused, match="sms_file"):
        build_app(reachable)
    # On a loopback address it is the development default.
    build_app(Settings(data_dir=tmp_path, host="127.0.0.1", sms_sender="console"))
