"""The `metrics` listener: Prometheus text format at /metrics, the health check at /healthz.

/metrics is prometheus_client's own WSGI exposition, run in the reactor's thread pool, so that
the scrape-time probes (the queue folder listed, the certificate read) never run on the
reactor. /healthz answers 200 "ok" while every listener is up, data_dir takes a write and the
served certificate has more than `metrics.certificate_days` left; else 503 with one line per
reason, which a load balancer or a monitoring check shows as it is.
"""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

from OpenSSL import SSL
from prometheus_client.twisted import MetricsResource
from twisted.internet import defer, reactor
from twisted.logger import Logger
from twisted.web import resource, server

from mailsuite.durable.modes import create_private_file
from mailsuite.tls import TlsContexts
from mailsuite.web.site import guarded_site, paced

log = Logger(namespace="mailsuite.monitor")

HEALTH_TIMEOUT = 10.0  # seconds a write probe may take before it counts as a failure


def certificate_expiry(tls: TlsContexts | None) -> float | None:
    """The expiry (seconds since the epoch) of the certificate new TLS connections get now:
    read from the context the listeners hand out, however it was loaded (a file, a renewal,
    SIGHUP); None without TLS."""
    context = getattr(tls, "context", None)
    if context is None:
        return None
    cert = SSL.Connection(context, None).get_certificate()
    if cert is None:
        return None
    return cert.to_cryptography().not_valid_after_utc.timestamp()


def queue_figures(entry_dir: Path, now: float | None = None) -> tuple[int, float]:
    """(entries, age in seconds of the oldest) of the spool's `entries/` folder: a spool file
    is written once, so its mtime is when the message was queued. Blocking."""
    now = time.time() if now is None else now
    count, oldest = 0, now
    try:
        with os.scandir(entry_dir) as it:
            for entry in it:
                try:
                    mtime = entry.stat(follow_symlinks=False).st_mtime
                except FileNotFoundError:
                    continue  # delivered and removed while we looked
                count += 1
                oldest = min(oldest, mtime)
    except FileNotFoundError:
        pass
    return count, max(0.0, now - oldest)


def add_probes(services) -> None:
    """The figures read at scrape time: queue length and age, the certificate's expiry."""

    def queue():
        count, age = queue_figures(services.queue.entry_dir)
        yield "mailsuite_queue_messages", "Messages in the outbound queue.", count
        yield (
            "mailsuite_queue_oldest_seconds",
            "Age of the oldest message in the outbound queue (0 when it is empty).",
            age,
        )

    def certificate():
        yield (
            "mailsuite_tls_certificate_expiry_timestamp_seconds",
            "When the certificate the TLS listeners serve expires (seconds since the epoch).",
            certificate_expiry(services.tls),
        )

    services.metrics.probe(queue)
    services.metrics.probe(certificate)


def write_probe(data_dir: Path) -> None:
    """Create and remove a private file in data_dir (blocking; OSError when it cannot)."""
    probe = data_dir / f".health-probe.{os.getpid()}"
    create_private_file(probe)
    probe.unlink()


def health_problems(services) -> defer.Deferred:
    """Deferred[list[str]]: why the server is not healthy, empty when it is."""
    problems = list(f"listener down: {name}" for name in services.metrics.listeners_down())
    expiry = certificate_expiry(services.tls)
    if expiry is not None:
        days = services.config.metrics.certificate_days
        left = expiry - time.time()
        if left < days * 86400:
            when = datetime.datetime.fromtimestamp(expiry, datetime.UTC).isoformat()
            problems.append(
                f"certificate expires in {left / 86400:.1f} days ({when}; less than {days})"
            )
    data_dir = services.config.data_dir
    d = services.store.io.submit(write_probe, data_dir)
    d.addTimeout(HEALTH_TIMEOUT, reactor)

    def unwritable(failure):
        reason = getattr(failure.value, "strerror", None) or failure.getErrorMessage()
        problems.append(f"data folder {data_dir} not writable: {reason}")

    d.addErrback(unwritable)
    return d.addCallback(lambda _: problems)


class HealthResource(resource.Resource):
    isLeaf = True

    def __init__(self, services):
        super().__init__()
        self.services = services

    def render_GET(self, request):  # noqa: N802
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def answer(problems: list[str]) -> None:
            if gone:
                return
            if problems:
                request.setResponseCode(503)
                log.warn("health check failed: {why}", why="; ".join(problems))
                request.write(("\n".join(problems) + "\n").encode("utf-8"))
            else:
                request.write(b"ok\n")
            request.finish()

        def crashed(failure) -> None:
            log.failure("health check crashed", failure=failure)
            if not gone:
                request.setResponseCode(500)
                request.finish()

        health_problems(self.services).addCallbacks(answer, crashed)
        return server.NOT_DONE_YET

    render_HEAD = render_GET  # noqa: N815


class NotFound(resource.Resource):
    isLeaf = True

    def render(self, request):
        request.setResponseCode(404)
        request.setHeader(b"Content-Type", b"text/plain; charset=utf-8")
        # The one answer given at once: a pipelined flood of them is paced like the web's.
        return paced(request, b"Not Found\n")


class MonitorRoot(resource.Resource):
    """Exactly /metrics and /healthz; everything else (sub-paths included) 404."""

    def __init__(self, services):
        super().__init__()
        self._pages = {
            b"metrics": MetricsResource(services.metrics.registry),
            b"healthz": HealthResource(services),
        }

    def getChild(self, path, request):  # noqa: N802
        page = self._pages.get(path)
        if page is None or request.postpath:
            return NotFound()
        return page

    def render(self, request):
        return NotFound().render(request)


def build_factory(services, kind: str) -> server.Site:
    """The same connection rules as the web listener's (`guarded_site`)."""
    return guarded_site(MonitorRoot(services), services)
