"""ENVELOPE and BODY/BODYSTRUCTURE as IMAP wire bytes (RFC 3501 §7.4.2, §9), from the
protocol-neutral parse results of `mailsuite.message`.

    envelope_bytes(content.envelope())          # "(date subject (from) ... message-id)"
    bodystructure_bytes(content.tree(), True)   # BODYSTRUCTURE; False: BODY
    envelope_value(env) / bodystructure(part, extensible)   # nested values for format_structure

The quoting follows Dovecot's, so that clients see what they see from it: a folded subject
goes out as a literal, BODYSTRUCTURE escapes quoted-specials where ENVELOPE uses a literal.
"""

from __future__ import annotations

import functools
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
    date, subject, folded, frm, sender, reply_to, to, cc, bcc, in_reply_to, message_id = env
    frm = _addr_list_bytes(frm) if frm else b"NIL"
    return b"(%s %s %s %s %s %s %s %s %s %s)" % (
        _nstring(date),
        _string(_Literal(subject)) if folded and subject is not None else _nstring(subject),
        frm,
        _addr_list_bytes(sender) if sender else frm,
        _addr_list_bytes(reply_to) if reply_to else frm,
        _addr_list_bytes(to) if to else b"NIL",
        _addr_list_bytes(cc) if cc else b"NIL",
        _addr_list_bytes(bcc) if bcc else b"NIL",
        _nstring(in_reply_to),
        _nstring(message_id),
    )


def _nstring(v: bytes | None) -> bytes:
    """ENVELOPE's nstring (never a `_Literal`): NIL, quoted (the common case, tested first)
    or as `_string` says."""
    if v is None:
        return b"NIL"
    if _quotable(v):
        return b'"%s"' % v
    return _string(v)


def _addr_list_bytes(addrs: list) -> bytes:
    """A non-empty address list.  RFC 3501 §9: env-from = "(" 1*address ")": addresses
    follow each other without SP."""
    out = []
    for name, adl, mailbox, host in addrs:
        # The common address, "name" NIL "mailbox" "host" with every string quotable, is
        # checked with one match (quotable strings are quotable concatenated, and back).
        if adl is None and mailbox is not None and host is not None and _quotable(mailbox + host):
            if name is None:
                out.append(b'(NIL NIL "%s" "%s")' % (mailbox, host))
                continue
            if _quotable(name):
                out.append(b'("%s" NIL "%s" "%s")' % (name, mailbox, host))
                continue
        out.append(
            b"(%s %s %s %s)" % (_nstring(name), _nstring(adl), _nstring(mailbox), _nstring(host))
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
_NONE_DESCRIBED = (None, None, None, None, None)
# A Content-Transfer-Encoding value that `MimePart.encoding_raw` takes as it is: one ASCII
# token (no comment, no white space, nothing its str.strip() could remove).
_PLAIN_CTE_RE = re.compile(rb"[!#$%&'*+\-.0-9A-Z^_`a-z{|}~]+\Z")


def _described(part: MimePart) -> tuple:
    """In one pass over the fields: the first value of each `_DESCRIBED` field (as
    `part.get`), the last Content-Disposition's value (as `part.last`) and the first
    Content-Transfer-Encoding field (raw), each None when absent."""
    if not part.mime_headers:
        return _NONE_DESCRIBED, None, None
    values = None
    disp = cte = None
    for name, raw in part.fields:
        i = _DESCRIBED.get(name)
        if i is not None:
            if values is None:
                values = [None, None, None, None, None]
            if values[i] is None:
                values[i] = field_value(raw)
        elif name == _DISPOSITION:
            disp = raw
        elif name == _CTE and cte is None:
            cte = raw
    return (
        _NONE_DESCRIBED if values is None else values,
        None if disp is None else field_value(disp),
        cte,
    )


def _encoding(part: MimePart, cte_field: bytes | None) -> bytes:
    """body-fld-enc: the first Content-Transfer-Encoding that is one token, "7bit" without
    one (as `bodystructure` reports it)."""
    if cte_field is None:
        return b'"7bit"'
    # Without unfolding first: a value that is one token after the strip held no line end
    # but in the white space the strip removed, so `field_value` would give the same bytes.
    v = cte_field[cte_field.index(b":") + 1 :].strip(b" \t\r\n")
    if _PLAIN_CTE_RE.match(v):
        return b'"%s"' % v  # a token is quotable
    cte = part.encoding_raw
    return _bstring(_b(cte)) if cte else b'"7bit"'


def _body_out(part: MimePart, extensible: bool, out: list[bytes]) -> None:
    """One body (RFC 3501 §9 body) appended to `out`, as `_emit_value` writes `bodystructure`'s
    value for it."""
    if part.ctype == "multipart" and part.has_content_type:  # part.is_multipart
        out.append(b"(")
        if part.children:
            # body-type-mpart = 1*body SP media-subtype: the bodies without SP between them
            for c in part.children:
                _body_out(c, extensible, out)
        else:
            out.append(_EMPTY_TEXT_EXT if extensible else _EMPTY_TEXT_BASIC)
        out.append(b" ")
        out.append(_quoted_name(part.subtype_raw or part.csubtype))
        if extensible:
            values, disp, _ = _described(part)
            out.append(b" ")
            out.append(_params_bytes(part.params, False))
            out.append(b" ")
            out.append(_ext_bytes(values, disp))
        out.append(b")")
        return
    values, disp, cte = _described(part)
    if part.has_content_type:
        t = _quoted_name(part.type_raw or part.ctype)
        s = _quoted_name(part.subtype_raw or part.csubtype)
    else:
        t, s = b'"text"', b'"plain"'  # RFC 2045 §5.2 default: text/plain; charset=us-ascii
    is_text = part.ctype == "text"
    out.append(
        b"(%s %s %s %s %s %s %d"
        % (
            t,
            s,
            # RFC 2045 §5.2: text defaults to us-ascii; Dovecot reports it explicitly
            _params_bytes(part.params, is_text),
            _nbstring(values[0]),
            _nbstring(values[1]),
            _encoding(part, cte),
            part.end - part.body_start,
        )
    )
    inner = part.message
    if inner is not None:
        out.append(b" ")
        out.append(envelope_bytes(envelope(inner.fields)))
        out.append(b" ")
        _body_out(inner, extensible, out)
        out.append(b" %d" % part.lines)
    elif is_text:
        out.append(b" %d" % part.lines)
    if extensible:
        if values is _NONE_DESCRIBED and disp is None:
            out.append(b" NIL NIL NIL NIL)")
            return
        out.append(b" ")
        out.append(_nbstring(values[2]))
        out.append(b" ")
        out.append(_ext_bytes(values, disp))
    out.append(b")")


def _params_bytes(params: list[tuple[str, str]], text: bool) -> bytes:
    """body-fld-param: `_param_list(params)` as written; for a text part (`text`) without a
    charset parameter, charset us-ascii is added at the end."""
    if not params:
        return b'("charset" "us-ascii")' if text else b"NIL"
    items = []
    for k, v in params:
        items.append(_quoted_name(k))
        items.append(_bstring(_b(v)))
        if text and k.lower() == "charset":
            text = False  # MimePart.param("charset") finds it: nothing to add
    if text:
        items.append(b'"charset" "us-ascii"')
    return b"(%s)" % b" ".join(items)


def _ext_bytes(values, disp: bytes | None) -> bytes:
    """body-fld-dsp SP body-fld-lang SP body-fld-loc, as `_ext_common` describes them."""
    if disp is None:
        dsp = b"NIL"
    else:
        main, params = parse_params(disp)
        dsp = b"(%s %s)" % (_quoted_name(main), _params_bytes(params, False)) if main else b"NIL"
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


def _quoted_name(s: str) -> bytes:
    """A media type, subtype, parameter or disposition name as a BODYSTRUCTURE string: a
    small vocabulary that recurs in every message, so each short one is written once (a
    bounded memo: names come from the messages, and any sender can make up new ones)."""
    return _quoted_short_name(s) if len(s) <= 64 else _bstring(_b(s))


@functools.lru_cache(maxsize=512)
def _quoted_short_name(s: str) -> bytes:
    return _bstring(_b(s))


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


# --- text to wire bytes ---------------------------------------------------------------------


def _b(s: str) -> bytes:
    return s.encode("utf-8", "surrogateescape")
