"""ManageSieve responses (RFC 5804 §1.2, §1.3, §4): OK, NO and BYE with their response codes,
and strings in the form the client can read back.  Pure: values in, bytes out."""

from __future__ import annotations

CRLF = b"\r\n"

# RFC 5804 §1.3 response codes.
AUTH_TOO_WEAK = "AUTH-TOO-WEAK"
ENCRYPT_NEEDED = "ENCRYPT-NEEDED"
QUOTA = "QUOTA"
QUOTA_MAXSCRIPTS = "QUOTA/MAXSCRIPTS"
QUOTA_MAXSIZE = "QUOTA/MAXSIZE"
NONEXISTENT = "NONEXISTENT"
ACTIVE = "ACTIVE"
ALREADYEXISTS = "ALREADYEXISTS"
WARNINGS = "WARNINGS"
TRYLATER = "TRYLATER"
# RFC 5804 §4: a quoted string holds at most 1024 octets.
MAX_QUOTED = 1024


class SieveNo(Exception):
    """A command failed: carries the NO response (its code and text) to send.  `bad` counts
    toward the session's bad-command limit (syntax, unknown commands, failed logins)."""

    def __init__(self, text: str, code: str | None = None, *, bad: bool = False):
        super().__init__(text)
        self.text = text
        self.code = code
        self.bad = bad

    def reply(self) -> bytes:
        return no(self.text, self.code)


def string(value: str | bytes) -> bytes:
    """A string for the client (RFC 5804 §4): quoted when short and plain, else a literal
    (`{n}` CRLF octets), which may hold anything."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= MAX_QUOTED and not any(c in data for c in b"\r\n\0"):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(data) + data


def _response(word: bytes, text: str | None, code: str | None, code_arg: bytes | None) -> bytes:
    out = word
    if code:
        out += b" (" + code.encode("ascii")
        if code_arg is not None:
            out += b" " + code_arg
        out += b")"
    if text:
        out += b" " + string(text)
    return out + CRLF


def ok(text: str | None = None, code: str | None = None, code_arg: bytes | None = None) -> bytes:
    return _response(b"OK", text, code, code_arg)


def no(text: str | None = None, code: str | None = None, code_arg: bytes | None = None) -> bytes:
    return _response(b"NO", text, code, code_arg)


def bye(text: str | None = None, code: str | None = None) -> bytes:
    return _response(b"BYE", text, code, None)


def tagged_ok(tag: bytes, text: str) -> bytes:
    """RFC 5804 §2.13: NOOP's tag comes back in the TAG response code."""
    return ok(text, "TAG", string(tag))


def capability_lines(pairs: list[tuple[str, str | None]]) -> list[bytes]:
    """RFC 5804 §1.7: one line per capability, its name and its value as strings."""
    out = []
    for name, value in pairs:
        line = string(name)
        if value is not None:
            line += b" " + string(value)
        out.append(line + CRLF)
    return out
