"""SMTP replies as the client sees them: a pure parser and the typed failure that carries one.

Kept apart from the protocol so that multi-line parsing, enhanced-status extraction and the
temporary/permanent classification are unit-testable without sockets.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 3463 §2: class.subject.detail, class 2/4/5.
_ENHANCED = re.compile(rb"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")
# RFC 5321 §4.2: replies longer than this are not SMTP; stop buffering.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 200


class ReplyParseError(Exception):
    """The server sent something that is not an SMTP reply."""


@dataclass(frozen=True)
class Reply:
    code: int
    lines: tuple[str, ...]
    # RFC 3463 enhanced status code from the first line, or "" when the server gave none.
    enhanced: str = ""

    @property
    def text(self) -> str:
        return " ".join(self.lines)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def status(self, default_detail: str = "0.0") -> str:
        """The enhanced status, or one derived from the reply class (RFC 3463 §3.1 x.0.0)."""
        if self.enhanced and self.enhanced[0] == str(self.code)[0]:
            return self.enhanced
        return f"{str(self.code)[0]}.{default_detail}"

    def wire(self) -> str:
        """The reply as a Diagnostic-Code would show it (RFC 3464 §2.3.6, type smtp)."""
        return f"{self.code} {self.text}".strip()


class ReplyParser:
    """Feed bytes; ``replies()`` yields each complete (possibly multi-line) reply in order."""

    def __init__(self) -> None:
        self._buf = b""
        self._lines: list[bytes] = []
        self._code: bytes | None = None

    def feed(self, data: bytes) -> list[Reply]:
        buf = self._buf + data if self._buf else data
        *lines, self._buf = buf.split(b"\n")
        out: list[Reply] = []
        for line in lines:
            reply = self._line(line.rstrip(b"\r"))
            if reply is not None:
                out.append(reply)
        if len(self._buf) > MAX_REPLY_LINE:
            raise ReplyParseError("reply line too long")
        return out

    def _line(self, line: bytes) -> Reply | None:
        # RFC 5321 §4.2: "ddd-text" continues, "ddd text" or "ddd" ends the reply.
        code, sep = line[:3], line[3:4]
        if len(code) < 3 or not code.isdigit() or sep not in b" -":
            raise ReplyParseError(f"not an SMTP reply line: {line[:80]!r}")
        if self._code is None:
            if sep != b"-":
                return _one_line(line)
        elif code != self._code:
            raise ReplyParseError("reply code changed within a multi-line reply")
        self._code = code
        self._lines.append(line[4:])
        if len(self._lines) > MAX_REPLY_LINES:
            raise ReplyParseError("too many reply lines")
        if sep == b"-":
            return None
        lines, self._lines, self._code = self._lines, [], None
        return make_reply(int(code), lines)


# One-line replies by their line: a server says the same few ("250 2.1.0 Ok", "354 ...") for
# every message, and a Reply is immutable, so each is parsed once.  Bounded: lines that differ
# every time ("250 2.0.0 queued as ...") fill it, and it is emptied when full.
_ONE_LINE_CACHE: dict[bytes, Reply] = {}
ONE_LINE_CACHED = 512


def _one_line(line: bytes) -> Reply:
    reply = _ONE_LINE_CACHE.get(line)
    if reply is None:
        reply = make_reply(int(line[:3]), (line[4:],))
        if len(_ONE_LINE_CACHE) >= ONE_LINE_CACHED:
            _ONE_LINE_CACHE.clear()
        _ONE_LINE_CACHE[line] = reply
    return reply


def make_reply(code: int, raw_lines) -> Reply:
    """A Reply from its code and the text of its lines (bytes, after "ddd" and its separator)."""
    enhanced = ""
    texts = []
    for raw in raw_lines:
        if raw[:1] in b"245" and (m := _ENHANCED.match(raw)):
            if not texts:
                enhanced = b".".join(m.groups()).decode()
            raw = raw[m.end() :]
        texts.append(raw.decode("utf-8", "replace"))
    return Reply(code, tuple(texts), enhanced)


class DeliveryFailure(Exception):
    """A failure for a whole attempt (or recipient), carrying what the DSN will report.

    ``status`` is the RFC 3463 code; ``diagnostic`` the remote reply text when there was one
    (Diagnostic-Code: smtp; ...); ``remote_mta`` the host that said it.
    """

    def __init__(self, status: str, text: str, diagnostic: str = "", remote_mta: str = ""):
        super().__init__(f"{status} {text}")
        self.status = status
        self.text = text
        self.diagnostic = diagnostic
        self.remote_mta = remote_mta

    @property
    def permanent(self) -> bool:
        return self.status.startswith("5")

    @classmethod
    def from_reply(cls, reply: Reply, remote_mta: str, detail: str = "0.0") -> DeliveryFailure:
        return cls(reply.status(detail), reply.text, reply.wire(), remote_mta)
