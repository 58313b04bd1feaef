"""Prometheus metrics, served by the admin listener at ``/metrics``.

Counters and histograms are updated where things happen (ingress, scheduler); gauges that
describe the database (pending, oldest pending, sizes) are read from SQLite at scrape time,
so they are right even after a restart. Labels are config names and fixed outcome words:
never an event id, a header or a secret, so cardinality stays small.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from relay.records import Gauges

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
END_TO_END_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 60, 300, 1800, 3600, 21600, 86400)
CIRCUIT = {"closed": 0, "half-open": 1, "open": 2}


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "relay_requests",
            "Requests to /in/<source> by outcome: accepted, duplicate, rejected, limited, "
            "unavailable, handshake",
            ["source", "outcome"],
            registry=r,
        )
        self.rejections = Counter(
            "relay_rejections",
            "Requests refused by a source, by reason",
            ["source", "reason"],
            registry=r,
        )
        self.unrouted = Counter(
            "relay_unrouted_events",
            "Events stored that no route matched",
            ["source"],
            registry=r,
        )
        self.stale = Counter(
            "relay_stale_events",
            "Normalized events that would have moved their message's status back",
            ["source"],
            registry=r,
        )
        self.catch_up_events = Counter(
            "relay_catch_up_events",
            "What catch-up found at the provider, by outcome: new (stored), known (relay had "
            "it), requested (a redelivery was asked)",
            ["source", "outcome"],
            registry=r,
        )
        self.catch_up_runs = Counter(
            "relay_catch_up_runs",
            "Catch-up runs by result: done, failed",
            ["source", "result"],
            registry=r,
        )
        self.deliveries = Counter(
            "relay_deliveries",
            "Deliveries that ended, by outcome (delivered, dead)",
            ["destination", "outcome"],
            registry=r,
        )
        self.attempts = Counter(
            "relay_attempts",
            "Attempts by outcome (delivered, retry, dead)",
            ["destination", "outcome"],
            registry=r,
        )
        self.retries = Counter(
            "relay_retries",
            "Attempts that failed and will be tried again",
            ["destination"],
            registry=r,
        )
        self.replays = Counter(
            "relay_replays", "Dead deliveries replayed", ["destination"], registry=r
        )
        self.certificate_expiry = Gauge(
            "relay_tls_certificate_expiry_timestamp_seconds",
            "When the public listener's certificate expires (Unix time; 0 without TLS)",
            registry=r,
        )
        self.ack_seconds = Histogram(
            "relay_ack_seconds",
            "Time from request start to the 2xx (commit included)",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.delivered_seconds = Histogram(
            "relay_received_to_delivered_seconds",
            "Time from receipt to a 2xx from the destination",
            ["destination"],
            buckets=END_TO_END_BUCKETS,
            registry=r,
        )
        self.attempt_seconds = Histogram(
            "relay_attempt_seconds",
            "Duration of one HTTP attempt",
            ["destination"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pending = Gauge(
            "relay_pending_deliveries",
            "Deliveries waiting or in flight",
            ["destination"],
            registry=r,
        )
        self.oldest_pending = Gauge(
            "relay_oldest_pending_seconds",
            "Age of the oldest pending delivery",
            ["destination"],
            registry=r,
        )
        self.dead = Gauge(
            "relay_dead_deliveries",
            "Dead deliveries not yet replayed",
            ["destination"],
            registry=r,
        )
        self.circuit = Gauge(
            "relay_circuit_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open",
            ["destination"],
            registry=r,
        )
        self.paused = Gauge(
            "relay_destination_paused",
            "1 while the destination is paused",
            ["destination"],
            registry=r,
        )
        self.agents_connected = Gauge(
            "relay_agents_connected", "Agents connected, per group", ["group"], registry=r
        )
        self.agent_offline = Gauge(
            "relay_agent_offline_seconds",
            "Seconds since an agent of the group was last connected (0: one is)",
            ["group"],
            registry=r,
        )
        self.agent_refusals = Counter(
            "relay_agent_refusals",
            "Agent connections refused, by reason (unknown group, missing or wrong token)",
            ["reason"],
            registry=r,
        )
        self.database_bytes = Gauge("relay_database_bytes", "Size of the SQLite file", registry=r)
        self.wal_bytes = Gauge("relay_wal_bytes", "Size of the SQLite WAL file", registry=r)
        self.storage_full = Gauge(
            "relay_storage_full",
            "1 while ingress refuses events: storage.max_size reached",
            registry=r,
        )

    def agent_gauges(self, status: dict[str, dict[str, object]]) -> None:
        for group, st in status.items():
            self.agents_connected.labels(group).set(float(str(st["connected"])))
            offline = st.get("offline_seconds")
            self.agent_offline.labels(group).set(float(str(offline)) if offline is not None else 0)

    def refresh(
        self,
        gauges: Gauges,
        lanes: Iterable[tuple[str, str, bool]],
        sizes: tuple[int, int],
        full: bool,
        now: float,
    ) -> None:
        """Set the gauges from the database's backlog, the lanes (name, circuit state,
        paused) and the file sizes, just before a scrape."""
        lanes = list(lanes)
        names = {name for name, _, _ in lanes} | set(gauges.pending) | set(gauges.dead)
        for name in names:
            count, oldest = gauges.pending.get(name, (0, None))
            self.pending.labels(name).set(count)
            self.oldest_pending.labels(name).set(max(0.0, now - oldest) if oldest else 0)
            self.dead.labels(name).set(gauges.dead.get(name, 0))
        for name, circuit, paused in lanes:
            self.circuit.labels(name).set(CIRCUIT[circuit])
            self.paused.labels(name).set(1 if paused else 0)
        database, wal = sizes
        self.database_bytes.set(database)
        self.wal_bytes.set(wal)
        self.storage_full.set(1 if full else 0)

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
