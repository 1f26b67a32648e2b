"""ENVELOPE and BODY/BODYSTRUCTURE as IMAP wire bytes (RFC 3501 §7.4.2, §9), from the
protocol-neutral parse results of `mailsuite.message`.

    envelope_bytes(content.envelope())          # "(date subject (from) ... message-id)"
    bodystructure_bytes(content.tree(), True)   # BODYSTRUCTURE; False: BODY
    envelope_value(env) / bodystructure(part, extensible)   # nested values for format_structure

The quoting follows Dovecot's, so that clients see what they see from it: a folded subject
goes out as a literal, BODYSTRUCTURE escapes quoted-specials where ENVELOPE uses a literal.
"""

from __future__ import annotations

import re

from mailsuite.imap.response import format_value
from mailsuite.message.envelope import Envelope, envelope
from mailsuite.message.params import parse_params, strip_comments
from mailsuite.message.structure import MimePart

__all__ = [
    "envelope_bytes",
    "envelope_value",
    "bodystructure",
    "bodystructure_bytes",
    "format_structure",
]


def envelope_value(env: Envelope) -> list:
    """RFC 3501 §7.4.2 ENVELOPE as a nested value for `format_structure`.

    Order: date, subject, from, sender, reply-to, to, cc, bcc, in-reply-to, message-id.
    Absent fields are NIL, but sender and reply-to default to from.  Values are sent
    unfolded and otherwise raw (encoded-words untouched), as RFC 3501 asks.
    """
    frm = _Concat(env.from_) if env.from_ else None
    return [
        env.date,
        _subject(env),
        frm,
        _Concat(env.sender) if env.sender else frm,
        _Concat(env.reply_to) if env.reply_to else frm,
        _Concat(env.to) if env.to else None,
        _Concat(env.cc) if env.cc else None,
        _Concat(env.bcc) if env.bcc else None,
        env.in_reply_to,
        env.message_id,
    ]


def _subject(env: Envelope) -> bytes | None:
    s = env.subject
    return _Literal(s) if s is not None and env.subject_folded else s


class _Concat(list):
    """A list whose items are written without SP between them (RFC 3501 §9 env-from etc.)."""


def envelope_bytes(env: Envelope) -> bytes:
    """ENVELOPE serialized directly (the hot path of FETCH ENVELOPE; same output as
    `format_structure(envelope_value(env), escape=False)`)."""
    frm = _addr_list_bytes(env.from_)
    sender = _addr_list_bytes(env.sender)
    reply_to = _addr_list_bytes(env.reply_to)
    return b" ".join(
        [
            b"(" + _nstring(env.date),
            _nstring(_subject(env)),
            frm,
            frm if sender == b"NIL" else sender,
            frm if reply_to == b"NIL" else reply_to,
            _addr_list_bytes(env.to),
            _addr_list_bytes(env.cc),
            _addr_list_bytes(env.bcc),
            _nstring(env.in_reply_to),
            _nstring(env.message_id) + b")",
        ]
    )


def bodystructure_bytes(root: MimePart, extensible: bool = True) -> bytes:
    """BODYSTRUCTURE (extensible=True) or BODY (False) of a message's tree, serialized."""
    return format_structure(bodystructure(root, extensible))


def _nstring(v: bytes | None) -> bytes:
    return b"NIL" if v is None else _string(v)


def _addr_list_bytes(addrs: list | None) -> bytes:
    if not addrs:
        return b"NIL"
    # RFC 3501 §9: env-from = "(" 1*address ")": addresses follow each other without SP
    return (
        b"("
        + b"".join(
            b"(%s %s %s %s)" % (_nstring(a[0]), _nstring(a[1]), _nstring(a[2]), _nstring(a[3]))
            for a in addrs
        )
        + b")"
    )


class _Raw(bytes):
    """Already-serialized IMAP text inside a structure (emitted verbatim)."""


def _param_list(params: list[tuple[str, str]]) -> list | None:
    if not params:
        return None
    out: list = []
    for k, v in params:
        out.append(_b(k))
        out.append(_b(v))
    return out


# Dovecot spells defaults in lower case; clients compare case-insensitively (RFC 3501 §9).
_EMPTY_TEXT = [b"text", b"plain", [b"charset", b"us-ascii"], None, None, b"7bit", 0, 0]


def bodystructure(part: MimePart, extensible: bool = True) -> list:
    """BODYSTRUCTURE (extensible=True) or BODY (False) of a part, RFC 3501 §7.4.2."""
    if part.is_multipart:
        if part.children:
            kids = [bodystructure(c, extensible) for c in part.children]
        else:
            # A multipart with no parts cannot be expressed (body-type-mpart needs 1*body);
            # report one empty text/plain part as Dovecot does.
            kids = [list(_EMPTY_TEXT) + ([None, None, None, None] if extensible else [])]
        out = kids + [_b(part.subtype_raw or part.csubtype)]
        if extensible:
            out += [_param_list(part.params)] + _ext_common(part)
        return _Multipart(out)
    if part.has_content_type:
        t, s = _b(part.type_raw or part.ctype), _b(part.subtype_raw or part.csubtype)
    else:
        t, s = b"text", b"plain"  # RFC 2045 §5.2 default: text/plain; charset=us-ascii
    params = _param_list(part.params)
    if part.ctype == "text" and part.param("charset") is None:
        # RFC 2045 §5.2: text defaults to us-ascii; Dovecot reports it explicitly
        params = (params or []) + [b"charset", b"us-ascii"]
    cte = part.encoding_raw
    enc = _b(cte) if cte else b"7bit"
    out = [
        t,
        s,
        params,
        part.get(b"content-id"),
        part.get(b"content-description"),
        enc or b"7bit",
        part.end - part.body_start,
    ]
    if part.is_message:
        inner = part.message
        out.append(_Raw(envelope_bytes(envelope(inner.fields))))
        out.append(bodystructure(inner, extensible))
        out.append(part.lines)
    elif part.ctype == "text":
        out.append(part.lines)
    if extensible:
        out.append(part.get(b"content-md5"))
        out += _ext_common(part)
    return out


class _Multipart(list):
    """Marks a multipart body: its children are written without separating spaces
    (RFC 3501 §9 body-type-mpart = 1*body SP media-subtype)."""


def _ext_common(part: MimePart) -> list:
    disp = part.last(b"content-disposition")  # the last one counts, as in Dovecot
    if disp is not None:
        main, params = parse_params(disp)
        dsp = [_b(main), _param_list(params)] if main else None
    else:
        dsp = None
    lang = part.get(b"content-language")
    lang_v = None
    if lang is not None:
        # RFC 3282 language tags, comments dropped; always a list, as Dovecot sends it
        text = _b(strip_comments(lang.decode("utf-8", "surrogateescape")))
        langs = []
        for item in text.split(b","):
            words = item.split()
            if words:
                langs.append(words[0])
            if len(words) != 1:
                break  # a tag list is comma separated; anything else ends it (as in Dovecot)
        lang_v = langs or None
    return [dsp, lang_v, part.get(b"content-location")]


# Quoted unless 8-bit, CR, LF, NUL, or a quoted-special: Dovecot sends `"` and `\` inside a
# literal rather than escaped, which every client parses (some mishandle the escapes).
_QUOTABLE_RE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x21\x23-\x5b\x5d-\x7f]*\Z")


class _Literal(bytes):
    """A string that goes out as a literal whatever it holds (Dovecot's rule for a subject
    that was folded or had TABs)."""


_ESCAPABLE_RE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x7f]*\Z")


def _string(v: bytes, escape: bool = False) -> bytes:
    """quoted when possible, else a literal (RFC 3501 §4.3: 8-bit, CR, LF need literals).

    `escape`: quoted-specials are escaped inside a quoted string (Dovecot does that in
    BODYSTRUCTURE) instead of forcing a literal (what it does in ENVELOPE)."""
    if b"\x00" in v:
        # RFC 3501 §9: no NUL even in a literal; U+FFFD stands in for it, as Dovecot sends
        v = v.replace(b"\x00", b"\xef\xbf\xbd")
    elif not isinstance(v, _Literal):
        if _QUOTABLE_RE.match(v):
            return b'"' + v + b'"'
        if escape and _ESCAPABLE_RE.match(v):
            return b'"' + v.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return b"{%d}\r\n" % len(v) + v


def format_structure(value, escape: bool = True) -> bytes:
    """Serialize BODYSTRUCTURE (escape=True) or ENVELOPE (escape=False) values; multipart
    children are not space-separated.  See `_string` for the quoting difference."""
    out: list[bytes] = []
    _emit_value(value, out, escape)
    return b"".join(out)


def _emit_value(value, out: list[bytes], escape: bool = True) -> None:
    if value is None:
        out.append(b"NIL")
    elif isinstance(value, _Raw):
        out.append(value)
    elif isinstance(value, bytes):
        out.append(_string(value, escape))
    elif isinstance(value, list):
        out.append(b"(")
        if isinstance(value, _Concat):
            for v in value:
                _emit_value(v, out, escape)
        elif isinstance(value, _Multipart):
            rest = False
            for v in value:
                if not rest and not isinstance(v, list):
                    rest = True  # after the child bodies: SP-separated subtype and extensions
                if rest:
                    out.append(b" ")
                _emit_value(v, out, escape)
        else:
            first = True
            for v in value:
                if not first:
                    out.append(b" ")
                first = False
                _emit_value(v, out, escape)
        out.append(b")")
    elif isinstance(value, int):
        out.append(b"%d" % value)
    elif isinstance(value, str):
        out.append(_string(_b(value), escape))
    else:
        out.append(format_value(value))


# --- the lazy per-message bundle -----------------------------------------------------------


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")
