"""The server's Prometheus metrics: one `Metrics` object per server (Services makes it), whose
methods the front ends call at the moment an event happens; `DISABLED` when no `metrics`
listener is configured, so that counting costs nothing then."""

from mailsuite.metrics.registry import DISABLED, Metrics, NoMetrics

__all__ = ["DISABLED", "Metrics", "NoMetrics"]
