"""Prometheus metrics of the projector: lag and progress per partition, events by outcome."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

LAG = Gauge(
    "retail_projection_lag_records",
    "Records written to a partition and not yet applied to the views",
    ["topic", "partition"],
)
POSITION = Gauge(
    "retail_projection_position",
    "Write-side position up to which a partition's events are applied",
    ["topic", "partition"],
)
EVENTS = Counter(
    "retail_projection_events_total",
    "Envelopes seen by the projector, by outcome",
    ["outcome"],  # applied, duplicate, dead_letter, marker
)
