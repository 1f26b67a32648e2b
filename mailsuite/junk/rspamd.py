"""rspamd as the judge, for sites that outgrow the built-in filter: its HTTP protocol
(`/checkv2` on the normal worker, `/learnspam` and `/learnham` on the controller) through
twisted.web's client.

A check that fails or takes longer than `junk.rspamd_timeout` is logged and left out: the
built-in filter judges that message instead, so rspamd never loses mail nor delays it beyond
the timeout.
"""

from __future__ import annotations

import json
from io import BytesIO
from urllib.parse import urlsplit, urlunsplit

from twisted.internet import defer, reactor
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers

from mailsuite.config import Config
from mailsuite.junk.model import JUNK
from mailsuite.junk.screen import Refusal
from mailsuite.junk.verdict import Signal
from mailsuite.logtext import visible

log = Logger(namespace="mailsuite.junk")
# rspamd's symbols named in the reason header, at most.
REASON_SYMBOLS = 4
MAX_ANSWER = 1024 * 1024


def controller_url(config: Config) -> str:
    """[junk] rspamd_controller, else the normal worker's host on port 11334."""
    if config.junk.rspamd_controller:
        return config.junk.rspamd_controller.rstrip("/")
    parts = urlsplit(config.junk.rspamd)
    host = parts.hostname or "127.0.0.1"
    netloc = f"[{host}]:11334" if ":" in host else f"{host}:11334"
    return urlunsplit((parts.scheme, netloc, "", "", "")).rstrip("/")


class RspamdClient:
    def __init__(self, config: Config, clock=reactor):
        self.config = config
        self.url = config.junk.rspamd.rstrip("/")
        self.controller = controller_url(config)
        self.timeout = config.junk.rspamd_timeout
        self.clock = clock
        self.pool = HTTPConnectionPool(clock, persistent=True)
        self.pool.maxPersistentPerHost = 8
        self.agent = Agent(clock, connectTimeout=self.timeout, pool=self.pool)
        self.failures = 0  # checks that fell back to the built-in filter

    def close(self) -> defer.Deferred:
        return self.pool.closeCachedConnections()

    def _post(self, url: str, headers: dict[bytes, list[bytes]], data: bytes) -> defer.Deferred:
        d = self.agent.request(
            b"POST", url.encode(), Headers(headers), FileBodyProducer(BytesIO(data))
        )

        def body(response):
            done: defer.Deferred = defer.Deferred()
            response.deliverBody(_Collect(done))
            return done.addCallback(lambda raw: (response.code, raw))

        d.addCallback(body)
        d.addTimeout(self.timeout, self.clock)
        return d

    async def check(self, envelope, data: bytes) -> list[Signal]:
        """rspamd's verdict as signals; Refusal for "reject", "soft reject", "greylist"."""
        headers = {
            b"IP": [(envelope.client_ip or "").encode()],
            b"Helo": [(envelope.helo or "").encode("utf-8", "replace")],
            b"From": [envelope.mail_from.encode("utf-8", "replace")],
            b"Rcpt": [r.address.encode("utf-8", "replace") for r in envelope.recipients],
            b"Hostname": [b"unknown"],
        }
        if envelope.authenticated_user:
            headers[b"User"] = [envelope.authenticated_user.encode()]
        try:
            code, raw = await self._post(self.url + "/checkv2", headers, data)
            if code != 200:
                raise ValueError(f"HTTP {code}")
            answer = json.loads(raw)
            action = str(answer["action"])
            score = float(answer.get("score", 0.0))
        except Exception as e:  # anything at all: the built-in filter takes over
            self.failures += 1
            log.warn(
                "junk: rspamd check failed ({why}); the built-in filter judges instead",
                why=visible(f"{e.__class__.__name__}: {e}"),
            )
            return []
        return self._apply(action, score, answer.get("symbols") or {})

    def _apply(self, action: str, score: float, symbols: dict) -> list[Signal]:
        strongest = sorted(symbols.values(), key=lambda s: -abs(float(s.get("score", 0) or 0)))[
            :REASON_SYMBOLS
        ]
        names = ", ".join(str(s.get("name", "?")) for s in strongest if s.get("score"))
        what = f"rspamd {action} {score:.1f}" + (f": {names}" if names else "")
        log.info("junk: {what}", what=visible(what))
        if action == "reject":
            raise Refusal(550, "5.7.1", f"Message refused as junk ({visible(what, 300)})")
        if action in ("soft reject", "greylist"):
            # RFC 6647 §2.1 for "greylist"; a temporary refusal either way.
            raise Refusal(451, "4.7.1", f"Try again later ({visible(what, 300)})")
        junk_score = self.config.junk.junk_score
        if action in ("add header", "rewrite subject"):
            points = max(score, junk_score)
        else:
            points = min(score, junk_score - 0.1)
        return [Signal(what, points, replaces_words=True)]

    def learn(self, raw: bytes, kind: str) -> defer.Deferred:
        """Teach rspamd what the user taught the built-in filter (never errbacks)."""
        path = "/learnspam" if kind == JUNK else "/learnham"
        headers: dict[bytes, list[bytes]] = {}
        if self.config.junk.rspamd_password:
            headers[b"Password"] = [self.config.junk.rspamd_password.encode()]
        d = self._post(self.controller + path, headers, raw)

        def done(result):
            code, body = result
            if code not in (200, 204, 208):
                log.warn("junk: rspamd {path}: HTTP {code}", path=path, code=code)
            return code

        def failed(failure):
            log.warn(
                "junk: rspamd {path} failed: {why}",
                path=path,
                why=visible(failure.getErrorMessage()),
            )
            return None

        return d.addCallbacks(done, failed)


class _Collect(Protocol):
    """A response body, at most MAX_ANSWER bytes of it (rspamd's JSON is small)."""

    def __init__(self, done: defer.Deferred):
        self.done = done
        self.parts: list[bytes] = []
        self.size = 0

    def dataReceived(self, data: bytes) -> None:
        if self.size < MAX_ANSWER:
            self.parts.append(data)
            self.size += len(data)

    def connectionLost(self, reason) -> None:
        if reason.check(ResponseDone, PotentialDataLoss):
            self.done.callback(b"".join(self.parts)[:MAX_ANSWER])
        else:
            self.done.errback(reason)
