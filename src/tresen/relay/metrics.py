"""The relay's Prometheus metrics (``/metrics``; docs/operations.md, "Metrics").

One :class:`RelayMetrics` per relay app, with a registry of its own. Frames, several per
message, are counted in plain integers that a collector reads when scraped (a tenth of a
locked counter's cost); the counters of group commits and refusals are children resolved in
advance; what the relay already keeps (connected devices, cluster notices) is read when
scraped; the mailbox's depth is sampled by a task every ``metrics.sample_s``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from tresen.core.errors import TresenError
from tresen.wire import relay as wire

__all__ = ["RelayMetrics"]

BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)
COMMIT_SECONDS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


def _tag(kind: type[Any]) -> str:
    return str(kind.__struct_config__.tag)


class _Notices(Collector):
    """What the cluster link counts anyway, read at scrape time."""

    def __init__(self, counts: Callable[[], tuple[int, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterable[Metric]:
        published, dropped = self._counts()
        yield CounterMetricFamily(
            "tresen_relay_cluster_notices_published",
            "Notices published to the other relay nodes",
            value=published,
        )
        yield CounterMetricFamily(
            "tresen_relay_cluster_notices_dropped",
            "Notices dropped because too many were waiting (the mailbox polls find the entries)",
            value=dropped,
        )


class _Frames(Collector):
    """Frames by kind, counted in plain integers by the connections."""

    def __init__(
        self, received: dict[type[Any], int], sent: dict[type[Any], int], invalid: Callable[[], int]
    ) -> None:
        self._received = received
        self._sent = sent
        self._invalid = invalid

    def collect(self) -> Iterable[Metric]:
        received = CounterMetricFamily(
            "tresen_relay_frames_received",
            "WebSocket frames received from devices, by kind (invalid: not a protocol frame)",
            labels=["kind"],
        )
        for kind, count in list(self._received.items()):
            received.add_metric([_tag(kind)], count)
        received.add_metric(["invalid"], self._invalid())
        yield received
        sent = CounterMetricFamily(
            "tresen_relay_frames_sent", "WebSocket frames sent to devices, by kind", labels=["kind"]
        )
        for kind, count in list(self._sent.items()):
            sent.add_metric([_tag(kind)], count)
        yield sent


class RelayMetrics:
    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.connected_devices = Gauge(
            "tresen_relay_connected_devices", "Devices connected to this node", registry=r
        )
        self._frames_in: dict[type[Any], int] = dict.fromkeys(typing.get_args(wire.ClientFrame), 0)
        self._frames_out: dict[type[Any], int] = dict.fromkeys(typing.get_args(wire.ServerFrame), 0)
        self._invalid_frames = 0
        r.register(_Frames(self._frames_in, self._frames_out, lambda: self._invalid_frames))
        self.messages_accepted = Counter(
            "tresen_relay_messages_accepted",
            "Messages stored for their recipients (repeated sends not counted)",
            registry=r,
        )
        self.messages_delivered = Counter(
            "tresen_relay_messages_delivered",
            "Messages acknowledged by a first device of their recipient",
            registry=r,
        )
        self.envelopes_acked = Counter(
            "tresen_relay_envelopes_acked",
            "Mailbox entries deleted because their device acknowledged them",
            registry=r,
        )
        self.mailbox_entries = Gauge(
            "tresen_relay_mailbox_entries",
            "Entries waiting in all mailboxes (sampled every metrics.sample_s)",
            registry=r,
        )
        self._batch_sizes = Histogram(
            "tresen_relay_group_commit_operations",
            "Operations (sends, acks, receipts, purges) per group commit",
            buckets=BATCH_SIZES,
            registry=r,
        )
        self._commit_seconds = Histogram(
            "tresen_relay_group_commit_seconds",
            "Time from taking a batch to answering all of its operations",
            buckets=COMMIT_SECONDS,
            registry=r,
        )
        self._refusals = Counter(
            "tresen_relay_refusals",
            "Requests and frames answered with an error, by error code and by where (http, ws)",
            ["code", "via"],
            registry=r,
        )
        self._refused: dict[tuple[int, str], Any] = {}
        self.http_requests = Counter(
            "tresen_relay_http_requests",
            "HTTP requests by route template and status class",
            ["route", "status"],
            registry=r,
        )

    def watch_connections(self, connected: Callable[[], int]) -> None:
        self.connected_devices.set_function(connected)

    def watch_cluster(self, counts: Callable[[], tuple[int, int]]) -> None:
        self.registry.register(_Notices(counts))

    def frame_received(self, frame: wire.ClientFrame) -> None:
        kind = type(frame)
        self._frames_in[kind] = self._frames_in.get(kind, 0) + 1

    def frame_invalid(self) -> None:
        self._invalid_frames += 1

    def frame_sent(self, frame: wire.ServerFrame) -> None:
        # A kind this version does not list (a newer relay's, in tests) counts under its tag.
        kind = type(frame)
        self._frames_out[kind] = self._frames_out.get(kind, 0) + 1

    def group_committed(self, size: int, seconds: float) -> None:
        """The group committer's observer (``core/batching.py``)."""
        self._batch_sizes.observe(size)
        self._commit_seconds.observe(seconds)

    def refused(self, error: TresenError, via: str) -> None:
        key = (int(error.code), via)
        child = self._refused.get(key)
        if child is None:
            child = self._refused[key] = self._refusals.labels(str(key[0]), via)
        child.inc()
