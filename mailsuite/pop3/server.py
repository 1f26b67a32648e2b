"""The Twisted side of a POP3 session (RFC 1939, RFC 2449, RFC 2595, RFC 5034, RFC 6856):
`mailsuite.line_adapter.LineProtocol` carrying out what the `Pop3Session` state machine
(`session.py`) asks, plus streaming.  Message bodies above a small size are streamed from disk
by `BodyStreamer`, a push producer, so memory stays flat and a slow client slows the reads down.
"""

from __future__ import annotations

from typing import BinaryIO

from twisted.internet import defer
from twisted.internet.protocol import connectionDone

from mailsuite.config import ConfigError
from mailsuite.line_adapter import LineProtocol
from mailsuite.listener import SessionFactory
from mailsuite.pop3.parser import WireEncoder, check_uidl_format
from mailsuite.pop3.session import Pop3Session
from mailsuite.pop3.streamer import BodyStreamer


class Pop3Protocol(LineProtocol):
    """One POP3 connection; the `Pop3Connection` its session talks to, and the producer of
    everything its transport sends (replies, and streamed bodies through `BodyStreamer`)."""

    session_class = Pop3Session
    streamer: BodyStreamer | None = None

    def connectionLost(self, reason=connectionDone) -> None:
        self._stop_streaming()
        super().connectionLost(reason)

    def close(self) -> None:
        self._stop_streaming()
        super().close()

    def _stop_streaming(self) -> None:
        if self.streamer is not None:
            self.streamer.stopProducing()
            self.streamer = None

    def stream(self, fileobj: BinaryIO, encoder: WireEncoder) -> defer.Deferred:
        self.streamer = BodyStreamer(
            self.transport,
            fileobj,
            encoder,
            self.session.services.store.io.submit,
            self.resetTimeout,
        )
        d = self.streamer.start(paused=self.session.output_blocked)

        def sent(result):
            self.streamer = None
            return result

        return d.addCallback(sent)

    # -- IPushProducer: a streamed body pauses and resumes with the replies.

    def pauseProducing(self) -> None:
        super().pauseProducing()
        if self.streamer is not None:
            self.streamer.pauseProducing()

    def resumeProducing(self) -> None:
        self.session.output_blocked = False
        if self.streamer is not None:
            self.streamer.resumeProducing()
        if not self.session.lost:
            self.session.pump()


def build_factory(services, kind: str) -> SessionFactory:
    """The factory for listener `kind`: "pop3" (110, STLS) or "pop3s" (995; app.py wraps TLS)."""
    if kind not in ("pop3", "pop3s"):
        raise ValueError(f"pop3 cannot serve listener kind {kind!r}")
    try:
        check_uidl_format(services.config.pop3.uidl_format)
    except ValueError as e:
        raise ConfigError("pop3.uidl_format", str(e)) from None
    expire = services.config.pop3.expire
    # RFC 2449 §6.7: EXPIRE is "NEVER" or a number of days (we only advertise the policy).
    if expire and not (expire == "NEVER" or expire.isdigit()):
        raise ConfigError("pop3.expire", 'must be "", "NEVER" or a number of days')
    return SessionFactory(Pop3Protocol, services, kind)
