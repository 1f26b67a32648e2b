"""One message's raw bytes and the views derived from them, each computed at most once."""

from __future__ import annotations

from mailsuite.message.envelope import Envelope, envelope
from mailsuite.message.headers import parse_fields
from mailsuite.message.lines import header_block, to_wire
from mailsuite.message.structure import MimePart, header_end_in, parse_message

__all__ = ["MessageContent"]


class MessageContent:
    """Lazily derived views of one message's raw bytes (LF or CRLF as stored).

    Cheap things (the header) never force the expensive ones (the CRLF copy of a big body,
    the MIME tree).  Every consumer of message content (IMAP FETCH/SEARCH/SORT/THREAD, the
    store's parsed cache) takes an object with these methods.
    """

    __slots__ = ("raw", "_wire", "_header", "_fields", "_tree", "_env")

    def __init__(self, raw: bytes):
        self.raw = raw
        self._wire: bytes | None = None
        self._header: bytes | None = None
        self._fields: list[tuple[bytes, bytes]] | None = None
        self._tree: MimePart | None = None
        self._env: Envelope | None = None

    def raw_bytes(self) -> bytes:
        return self.raw

    def wire(self) -> bytes:
        """The message with CRLF line ends."""
        if self._wire is None:
            self._wire = to_wire(self.raw)
        return self._wire

    def header(self) -> bytes:
        """The top-level header with CRLF line ends, its blank line included."""
        if self._header is None:
            if self._wire is not None:
                w = self._wire
                self._header = w[: header_end_in(w, 0, len(w))]
            else:
                self._header = header_block(self.raw)
        return self._header

    def fields(self) -> list[tuple[bytes, bytes]]:
        if self._fields is None:
            self._fields = parse_fields(self.header())
        return self._fields

    def tree(self) -> MimePart:
        if self._tree is None:
            self._tree = parse_message(self.wire())
        return self._tree

    def envelope(self) -> Envelope:
        if self._env is None:
            self._env = envelope(self.fields())
        return self._env
