"""What may be a local address or domain: checked once, before anything is written.

Every way an account, alias or domain comes into being (`mailsuite user add`, `alias add`,
`domain add`, `import users`, the config's `domains`) goes through `parse_address` /
`parse_domain` in `Accounts`, so the account database only ever holds names that SMTP can
receive for and that are safe as folder names under `<data_dir>/mail/<domain>/<local>/`.
Domains are kept as A-labels, lower case (the SMTP server tries both IDNA forms of a domain
it is given, `smtp.parser.domain_forms`, and finds them).
"""

from __future__ import annotations

import string
import unicodedata

import idna

from mailsuite.accounts.errors import AccountError

# RFC 5321 §4.1.2 Atom: RFC 5322 atext; RFC 6531 §3.3 adds every non-ASCII character.
# "/" is atext, but it is a path separator in the Maildir's folder name: refused.
_ATEXT = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-=?^_`{|}~")
# RFC 5321 §4.5.3.1.1 and §4.5.3.1.2: the longest local part and domain.
MAX_LOCAL_OCTETS = 64
MAX_DOMAIN_OCTETS = 253
_LDH = frozenset(string.ascii_lowercase + string.digits + "-")


class BadAddress(AccountError):
    """A malformed address or domain (exit status EX_DATAERR in the admin command)."""


def parse_domain(text: str) -> str:
    """The domain in the form the accounts keep (A-labels, lower case, no final dot); raises
    BadAddress with the reason."""
    shown = repr(text)
    domain = text.strip()
    if domain.endswith("."):
        domain = domain[:-1]
    if not domain:
        raise BadAddress(f"{shown} is not a domain name: it is empty")
    _refuse_invisible(domain, shown, "domain name")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError as e:
            raise BadAddress(f"{shown} is not a domain name: {e}") from None
    domain = domain.lower()
    if len(domain) > MAX_DOMAIN_OCTETS:
        raise BadAddress(f"{shown} is not a domain name: longer than {MAX_DOMAIN_OCTETS} octets")
    for label in domain.split("."):
        # RFC 1123 §2.1 host names: letters, digits, hyphens; no hyphen at either end.
        if (
            not label
            or len(label) > 63
            or not set(label) <= _LDH
            or label[0] == "-"
            or label[-1] == "-"
        ):
            raise BadAddress(
                f"{shown} is not a domain name: each label is 1 to 63 letters, digits or "
                "hyphens, not starting or ending with a hyphen"
            )
    if domain.startswith("xn--") or ".xn--" in domain:
        try:
            idna.decode(domain)
        except idna.IDNAError as e:
            raise BadAddress(f"{shown} is not a domain name: {e}") from None
    return domain


def parse_local_part(text: str, shown: str) -> str:
    """The local part, lower case, if it is an RFC 5321 Dot-string that is safe as a folder
    name; raises BadAddress."""
    if not text:
        raise BadAddress(f"{shown} is not an address: the part before @ is empty")
    _refuse_invisible(text, shown, "address")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_LOCAL_OCTETS:
        raise BadAddress(f"{shown} is not an address: the part before @ is over 64 octets")
    if "/" in text or "\\" in text:
        raise BadAddress(f"{shown} is not an address: '/' and '\\' are not allowed before @")
    # RFC 5321 §4.1.2 Dot-string = Atom *("." Atom): no leading, trailing or doubled dot.
    for atom in text.split("."):
        if not atom:
            raise BadAddress(
                f"{shown} is not an address: a dot may not start or end the part before @, "
                "nor follow another dot"
            )
        for ch in atom:
            if ch not in _ATEXT and ch.isascii():
                raise BadAddress(f"{shown} is not an address: {ch!r} is not allowed before @")
    return text.lower()


def parse_address(text: str) -> str:
    """`local@domain` normalized as the accounts keep it (local part lower case, the domain as
    parse_domain gives it); raises BadAddress saying what is wrong."""
    shown = repr(text)
    address = text.strip()
    local, sep, domain = address.rpartition("@")
    if not sep:
        raise BadAddress(f"{shown} is not an address: it has no @")
    if "@" in local:
        raise BadAddress(f"{shown} is not an address: it has more than one @")
    local = parse_local_part(local, shown)
    try:
        domain = parse_domain(domain)
    except BadAddress as e:
        raise BadAddress(f"{shown} is not an address: {str(e).split(': ', 1)[1]}") from None
    return f"{local}@{domain}"


def lookup_domain(domain: str) -> str:
    """A domain as lookups compare it: lower case, no final dot, A-labels where it has
    U-labels (a name that does not convert stays as it is and matches nothing)."""
    domain = domain.lower().rstrip(".")
    if not domain.isascii():
        try:
            domain = idna.encode(domain, uts46=True).decode("ascii")
        except idna.IDNAError:
            pass
    return domain


def _refuse_invisible(text: str, shown: str, what: str) -> None:
    """White space, control and format characters never belong in a name (and would forge
    log lines or confuse a shell)."""
    for ch in text:
        if unicodedata.category(ch)[0] in "CZ":
            raise BadAddress(
                f"{shown} is not {'an' if what == 'address' else 'a'} {what}: it contains "
                f"white space or a control character ({ascii(ch)})"
            )
