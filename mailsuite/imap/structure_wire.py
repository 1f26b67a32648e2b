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
from mailsuite.message.headers import field_value
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
    sender = _addr_list_bytes(env.sender) if env.sender else frm
    reply_to = _addr_list_bytes(env.reply_to) if env.reply_to else frm
    subject = env.subject
    return b"(%s %s %s %s %s %s %s %s %s %s)" % (
        _nstring(env.date),
        _string(_Literal(subject))
        if env.subject_folded and subject is not None
        else _nstring(subject),
        frm,
        sender,
        reply_to,
        _addr_list_bytes(env.to),
        _addr_list_bytes(env.cc),
        _addr_list_bytes(env.bcc),
        _nstring(env.in_reply_to),
        _nstring(env.message_id),
    )


def _nstring(v: bytes | None) -> bytes:
    """ENVELOPE's nstring (never a `_Literal`): NIL, quoted (the common case, tested first)
    or as `_string` says."""
    if v is None:
        return b"NIL"
    if _quotable(v):
        return b'"%s"' % v
    return _string(v)


def _addr_list_bytes(addrs: list | None) -> bytes:
    if not addrs:
        return b"NIL"
    # RFC 3501 §9: env-from = "(" 1*address ")": addresses follow each other without SP
    out = []
    for name, adl, mailbox, host in addrs:
        out.append(
            b"(%s %s %s %s)"
            % (
                b"NIL" if name is None else _nstring(name),
                b"NIL" if adl is None else _nstring(adl),
                b"NIL" if mailbox is None else _nstring(mailbox),
                b"NIL" if host is None else _nstring(host),
            )
        )
    return b"(%s)" % b"".join(out)


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
    return [dsp, _languages(part.get(b"content-language")) or None, part.get(b"content-location")]


def _languages(lang: bytes | None) -> list[bytes]:
    """RFC 3282 language tags, comments dropped; always a list, as Dovecot sends it."""
    if lang is None:
        return []
    text = _b(strip_comments(lang.decode("utf-8", "surrogateescape")))
    langs = []
    for item in text.split(b","):
        words = item.split()
        if words:
            langs.append(words[0])
        if len(words) != 1:
            break  # a tag list is comma separated; anything else ends it (as in Dovecot)
    return langs


def bodystructure_bytes(root: MimePart, extensible: bool = True) -> bytes:
    """BODYSTRUCTURE (extensible=True) or BODY (False) of a message's tree, serialized
    directly (the hot path of FETCH BODYSTRUCTURE; same output as
    `format_structure(bodystructure(root, extensible))`)."""
    out: list[bytes] = []
    _body_out(root, extensible, out)
    return b"".join(out)


_CTE = b"content-transfer-encoding"
_DISPOSITION = b"content-disposition"
# The fields a body description reports: their index in `_described`'s answer.
_DESCRIBED = {
    b"content-id": 0,
    b"content-description": 1,
    b"content-md5": 2,
    b"content-language": 3,
    b"content-location": 4,
}


def _described(part: MimePart) -> tuple[list, bytes | None, bool]:
    """In one pass over the fields: the first value of each `_DESCRIBED` field (as
    `part.get`), the last Content-Disposition (as `part.last`), and whether there is a
    Content-Transfer-Encoding field at all (`part.encoding_raw` is only asked then)."""
    values: list = [None, None, None, None, None]
    if not part.mime_headers:
        return values, None, False
    disp = None
    cte = False
    for name, raw in part.fields:
        i = _DESCRIBED.get(name)
        if i is not None:
            if values[i] is None:
                values[i] = field_value(raw)
        elif name == _DISPOSITION:
            disp = raw
        elif name == _CTE:
            cte = True
    return values, None if disp is None else field_value(disp), cte


def _body_out(part: MimePart, extensible: bool, out: list[bytes]) -> None:
    """One body (RFC 3501 §9 body) appended to `out`, as `_emit_value` writes `bodystructure`'s
    value for it."""
    if part.is_multipart:
        out.append(b"(")
        if part.children:
            # body-type-mpart = 1*body SP media-subtype: the bodies without SP between them
            for c in part.children:
                _body_out(c, extensible, out)
        else:
            out.append(_EMPTY_TEXT_EXT if extensible else _EMPTY_TEXT_BASIC)
        out.append(b" ")
        out.append(_bstring(_b(part.subtype_raw or part.csubtype)))
        if extensible:
            values, disp, _ = _described(part)
            out.append(b" ")
            out.append(_params_bytes(part.params, False))
            out.append(b" ")
            out.append(_ext_bytes(values, disp))
        out.append(b")")
        return
    values, disp, has_cte = _described(part)
    if part.has_content_type:
        t = _bstring(_b(part.type_raw or part.ctype))
        s = _bstring(_b(part.subtype_raw or part.csubtype))
    else:
        t, s = b'"text"', b'"plain"'  # RFC 2045 §5.2 default: text/plain; charset=us-ascii
    # RFC 2045 §5.2: text defaults to us-ascii; Dovecot reports it explicitly
    default_charset = part.ctype == "text" and part.param("charset") is None
    cte = part.encoding_raw if has_cte else None
    out.append(
        b"(%s %s %s %s %s %s %d"
        % (
            t,
            s,
            _params_bytes(part.params, default_charset),
            _nbstring(values[0]),
            _nbstring(values[1]),
            _bstring(_b(cte)) if cte else b'"7bit"',
            part.end - part.body_start,
        )
    )
    if part.is_message:
        inner = part.message
        out.append(b" ")
        out.append(envelope_bytes(envelope(inner.fields)))
        out.append(b" ")
        _body_out(inner, extensible, out)
        out.append(b" %d" % part.lines)
    elif part.ctype == "text":
        out.append(b" %d" % part.lines)
    if extensible:
        out.append(b" ")
        out.append(_nbstring(values[2]))
        out.append(b" ")
        out.append(_ext_bytes(values, disp))
    out.append(b")")


def _params_bytes(params: list[tuple[str, str]], default_charset: bool) -> bytes:
    """body-fld-param: `_param_list(params)` (plus charset us-ascii) as written."""
    if not params:
        return b'("charset" "us-ascii")' if default_charset else b"NIL"
    items = []
    for k, v in params:
        items.append(_bstring(_b(k)))
        items.append(_bstring(_b(v)))
    if default_charset:
        items.append(b'"charset" "us-ascii"')
    return b"(%s)" % b" ".join(items)


def _ext_bytes(values: list, disp: bytes | None) -> bytes:
    """body-fld-dsp SP body-fld-lang SP body-fld-loc, as `_ext_common` describes them."""
    if disp is None:
        dsp = b"NIL"
    else:
        main, params = parse_params(disp)
        dsp = b"(%s %s)" % (_bstring(_b(main)), _params_bytes(params, False)) if main else b"NIL"
    return b"%s %s %s" % (dsp, _lang_bytes(values[3]), _nbstring(values[4]))


def _lang_bytes(lang: bytes | None) -> bytes:
    langs = _languages(lang)
    return b"(%s)" % b" ".join([_bstring(t) for t in langs]) if langs else b"NIL"


def _bstring(v: bytes) -> bytes:
    """A string in BODYSTRUCTURE (escaping allowed): quoted, the common case tested first."""
    if _quotable(v):
        return b'"%s"' % v
    return _string(v, True)


def _nbstring(v: bytes | None) -> bytes:
    return b"NIL" if v is None else _bstring(v)


# Quoted unless 8-bit, CR, LF, NUL, or a quoted-special: Dovecot sends `"` and `\` inside a
# literal rather than escaped, which every client parses (some mishandle the escapes).
_QUOTABLE_RE = re.compile(rb"[\x01-\x09\x0b\x0c\x0e-\x21\x23-\x5b\x5d-\x7f]*\Z")
_quotable = _QUOTABLE_RE.match


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


# A multipart without parts, described as one empty text/plain part (see `bodystructure`).
_EMPTY_TEXT_BASIC = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0)'
_EMPTY_TEXT_EXT = b'("text" "plain" ("charset" "us-ascii") NIL NIL "7bit" 0 0 NIL NIL NIL NIL)'


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
