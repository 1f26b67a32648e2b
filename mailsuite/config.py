"""TOML configuration read once into typed, validated settings.

Nothing else in mailsuite reads the TOML file or the environment: every part receives the
`Config` object.  Errors name the offending key so that an operator can fix the file from the
one line printed at start.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

# Looked for in the current folder when neither --config nor $MAILSUITE_CONFIG names a file.
DEFAULT_CONFIG = Path("conf/mailsuite.toml")
# The embedded default, used when no config file is found: loopback only, unprivileged ports.
EMBEDDED_CONFIG = Path(__file__).resolve().parent / "default.toml"


class ConfigError(Exception):
    """A configuration problem, with the dotted key it concerns."""

    def __init__(self, key: str, message: str):
        super().__init__(f"{key}: {message}" if key else message)
        self.key = key


@dataclass(frozen=True)
class TlsConfig:
    # PEM certificate chain (fullchain.pem with Let's Encrypt).
    cert: Path = Path("certs/mail.pem")
    # PEM private key (mode 0600).
    key: Path = Path("certs/mail.key")
    # Make a self-signed certificate at `cert` and `key` when both are missing. The default is
    # true when `cert` and `key` are not set and false when either is: a configured path that
    # does not exist (a typo in a Let's Encrypt path) stops the server instead.
    self_signed: bool = True
    # Microsoft's inbound servers have had trouble with session tickets; allow turning them off.
    session_tickets: bool = True
    # Lowest TLS version accepted: "1.2" or "1.3".
    min_version: str = "1.2"


@dataclass(frozen=True)
class ListenConfig:
    # Each a list of "host:port" ("[v6]:port" for IPv6); an empty list disables the listener.
    # Inbound MX (25 in production).
    smtp: list[str] = field(default_factory=lambda: ["127.0.0.1:2525"])
    # Submission, 587: STARTTLS, AUTH required.
    submission: list[str] = field(default_factory=lambda: ["127.0.0.1:2587"])
    # Submission over implicit TLS, 465 (RFC 8314).
    submissions: list[str] = field(default_factory=lambda: ["127.0.0.1:2465"])
    # POP3 with STLS, 110.
    pop3: list[str] = field(default_factory=lambda: ["127.0.0.1:2110"])
    # POP3 over implicit TLS, 995.
    pop3s: list[str] = field(default_factory=lambda: ["127.0.0.1:2995"])
    # IMAP with STARTTLS, 143.
    imap: list[str] = field(default_factory=lambda: ["127.0.0.1:2143"])
    # IMAP over implicit TLS, 993.
    imaps: list[str] = field(default_factory=lambda: ["127.0.0.1:2993"])
    # HTTP for client autoconfiguration and MTA-STS.
    http: list[str] = field(default_factory=lambda: ["127.0.0.1:8080"])
    # The same web endpoints over implicit TLS (certificate from [tls]); empty: none.
    https: list[str] = field(default_factory=list)
    # Prometheus metrics (/metrics) and the health check (/healthz) over HTTP; empty: off.
    # Loopback addresses only, unless `metrics.allow_remote` (docs/monitoring.md).
    metrics: list[str] = field(default_factory=list)
    # ManageSieve (RFC 5804) with STARTTLS, 4190: users edit their Sieve filters.
    managesieve: list[str] = field(default_factory=lambda: ["127.0.0.1:24190"])


@dataclass(frozen=True)
class AuthConfig:
    # "never": password logins only over TLS; "loopback": also in clear from 127/8 and ::1.
    plaintext: str = "never"
    # Failed-login throttle (docs/production.md): counted per (client network, account), per
    # client address, and per account in distinct client addresses. After `free_failures`
    # failures the delay doubles from `base_delay` up to `max_delay`; `lockout_failures`
    # failures lock out for `lockout_seconds`. A network (/24, IPv6 /64) from which the account
    # has logged in before is exempt from the per-address and per-account records.
    free_failures: int = 3
    # First delay in seconds once the free failures are used up.
    base_delay: float = 1.0
    # Longest delay in seconds between attempts before the lock-out.
    max_delay: float = 15.0
    # Failures for one account from one client network, or from that many different client
    # addresses, that lock it out (for that network, or for every network not known-good) for
    # `lockout_seconds`.
    lockout_failures: int = 10
    # How long a lock-out lasts; failures older than this are forgotten.
    lockout_seconds: int = 300
    # Failures from one client address (an IPv6 /64), over any accounts, that lock the address
    # out for `lockout_seconds`, except for the accounts known-good there. Outlook.com connects
    # from shared cloud addresses: this limit is looser than the per-account one.
    ip_lockout_failures: int = 30

    # Failures from one client address before its delays start (the account's own delays start
    # after `free_failures`), for the same reason.
    ip_free_failures: int = 10

    # (account, client network) pairs with a successful login that the throttle remembers
    # (least recently used forgotten first; kept in memory).
    known_good_entries: int = 10000


@dataclass(frozen=True)
class LimitsConfig:
    # Concurrent connections over all listeners; 0: as many as the file-descriptor limit
    # allows (half of what it leaves after 256 for files, at most 10000). When they are all
    # taken, the quietest connection that has not logged in is closed to make room; only
    # when every one has logged in is a newcomer refused (421 / BYE / -ERR [SYS/TEMP]).
    connections_total: int = 0
    # Concurrent connections from one client address (then refused, never made room for).
    connections_per_ip: int = 20
    # Malformed or unknown commands in one session before it is closed.
    bad_commands: int = 20
    # Bytes of message content (DATA/BDAT) all SMTP sessions together may hold in memory while
    # messages arrive and are delivered. Content past it is refused with 452 4.3.1
    # (insufficient system storage), a temporary failure the sender retries later.
    message_memory: int = 256 * 1024 * 1024
    # The share of `message_memory` the sessions from one client address that have not logged
    # in may hold together; 0: twice `[smtp] max_message_size`. Logged-in sessions count
    # toward `message_memory` only. Neither bound is taken below one message of
    # `max_message_size` (a smaller one would refuse every large message for ever).
    message_memory_per_ip: int = 0


@dataclass(frozen=True)
class SmtpConfig:
    # Largest message accepted, in bytes (advertised as SIZE, RFC 1870).
    max_message_size: int = 50 * 1024 * 1024
    # Recipients per message; then 452 4.5.3.
    max_recipients: int = 100
    # Received header fields a message may carry; one with more has been passed around in a
    # loop and is refused (554 5.4.6 too many hops; RFC 5321 §6.3). Postfix's hopcount_limit.
    max_hops: int = 50
    # RFC 5321 §4.5.3.1.4: command line length, CRLF included (at least 512).
    max_command_line: int = 512
    # RFC 5321 §4.5.3.1.6: message text line length, CRLF included (at least 1000).
    max_text_line: int = 1000
    # "reject" answers 554 5.5.2 to a message with bare LF/CR; "normalize" turns them into CRLF.
    bare_newline: str = "reject"
    # Seconds to wait for the next command (RFC 5321 §4.5.3.2: at least 5 minutes).
    command_timeout: int = 300
    # Seconds to wait for each chunk of message data.
    data_timeout: int = 600
    # Seconds from connecting within which a client must log in or have a message accepted,
    # however steadily it sends (a message still arriving then gets `data_timeout` more);
    # 0: none.
    session_deadline: int = 300
    # Seconds to wait before the greeting; clients that talk first are refused (pre-greeting
    # pipelining is a spammer habit).
    greeting_delay: float = 0.0


@dataclass(frozen=True)
class Pop3Config:
    # Longest command line accepted (RFC 2449 §4 allows 255 octets; we accept more).
    max_command_line: int = 512
    # Seconds of inactivity before the session is closed (RFC 1939 §3: the autologout timer
    # must be at least 10 minutes).
    idle_timeout: int = 600
    # Seconds from connecting within which a client must log in, however steadily it sends;
    # 0: none.
    login_deadline: int = 60
    # Seconds between logins advertised as LOGIN-DELAY (RFC 2449); 0: not advertised.
    login_delay: int = 0

    # EXPIRE value advertised (RFC 2449), e.g. "NEVER" or days; "": not advertised.
    expire: str = ""
    # Dovecot's pop3_uidl_format variables %u (UID), %v (UIDVALIDITY), %f (Maildir base name);
    # Dovecot's default, so that an adopted Dovecot Maildir keeps its UIDLs (pop3/parser.py).
    uidl_format: str = "%08Xu%08Xv"


@dataclass(frozen=True)
class ImapConfig:
    # Longest command line outside literals; also the most the literals of one command other
    # than APPEND and REPLACE (names, passwords, search strings) may hold together (NO
    # [TOOBIG] beyond).
    max_command_line: int = 65536

    # Largest literal accepted (NO [TOOBIG] above it, without reading it).
    max_literal: int = 64 * 1024 * 1024
    # Largest literal accepted before authentication: LOGIN's user name and password need a
    # few bytes, and a stranger must not make us hold megabytes (NO [TOOBIG] above it).
    max_literal_before_auth: int = 8192
    # Seconds of inactivity before the session is closed (RFC 3501 §5.4: the autologout timer
    # must be at least 30 minutes; IDLE clients re-issue it within that time).
    idle_timeout: int = 1800
    # Seconds from connecting within which a client must log in, however steadily it sends
    # (the autologout timer above measures inactivity, which a trickle of bytes resets);
    # 0: none.
    login_deadline: int = 60

    # Largest message APPEND accepts, advertised as APPENDLIMIT (RFC 7889).
    append_limit: int = 64 * 1024 * 1024
    # Searches (SEARCH/SORT RETURN (UPDATE), RFC 5267) one session may keep updated at a
    # time; one more is answered without updates (NOUPDATE). At least 1 is kept.
    max_updating_searches: int = 10


@dataclass(frozen=True)
class ManageSieveConfig:
    # Longest command line outside literals (RFC 5804 §4 quoted strings are at most 1024
    # octets; a SASL response line needs a few more).
    max_command_line: int = 8192
    # Largest literal accepted before authentication: a stranger must not make us hold
    # megabytes (the connection is closed above it). After login the bound is the script
    # size limit of [sieve].
    max_literal_before_auth: int = 8192
    # Seconds without a command before the connection is closed.
    idle_timeout: int = 1800
    # Seconds from connecting within which a client must log in, however steadily it sends;
    # 0: none.
    login_deadline: int = 60


@dataclass(frozen=True)
class RelayConfig:
    # Static routes overriding DNS per domain: "example.net" = "127.0.0.1:2526".
    routes: dict[str, str] = field(default_factory=dict)

    # Send everything through a provider: host, port, tls ("starttls", "implicit", "none"),
    # username, password; tls_verify = true checks the provider's certificate and host name
    # (against ca_file, a PEM file, or the system's trusted CAs) before the password is sent.
    smarthost: dict[str, typing.Any] = field(default_factory=dict)

    # DNS servers for MX/A/AAAA lookups ("ip" or "ip:port"); empty: /etc/resolv.conf.
    resolvers: list[str] = field(default_factory=list)

    # Seconds between delivery attempts; the last value repeats until `max_age`.
    retry_schedule: list[int] = field(default_factory=lambda: [300, 600, 1200, 2400, 3600])

    # Seconds after which an undeliverable message is bounced.
    max_age: int = 5 * 24 * 3600

    # Seconds after which the sender gets a delay warning.
    delay_warning: int = 4 * 3600

    # Concurrent outbound connections to one destination (an MX host or route).
    connections_per_destination: int = 5
    # Concurrent outbound connections in all.
    connections_total: int = 20

    # Domains that must be reached over TLS (no plaintext fallback).
    require_tls: list[str] = field(default_factory=list)

    # Seconds to wait for each reply to a command (RFC 5321 §4.5.3.2: at least 5 minutes).
    command_timeout: int = 300
    # Seconds to wait for a TCP connection to a destination.
    connect_timeout: int = 30

    # Port used for MX and implicit-MX hosts (25 on the internet; tests point it elsewhere).
    mx_port: int = 25

    # Seconds to wait for a DNS answer to an MX, A or AAAA lookup.
    dns_timeout: int = 20
    # RFC 5321 §4.5.3.2.6: wait at least 10 minutes for the reply to the final dot.
    data_timeout: int = 600
    # How often the runner checks for due entries and for `mailsuite queue flush`'s trigger.
    scan_interval: float = 1.0


@dataclass(frozen=True)
class PublicConfig:
    """Names and ports clients should use (autoconfig, `mailsuite dns`), which may differ from
    the bind addresses (behind NAT or a port forward)."""

    # Host name clients are told to connect to; "": `hostname` (autoconfig on a server whose
    # mail listeners are all on loopback: their loopback address, the only one that answers).
    host: str = ""

    # The IMAP over TLS port clients are told; 0: the `[listen] imaps` listener's port (for
    # `mailsuite dns` only one on a non-loopback address counts), else 993. The same rule
    # holds for the ports below.
    imaps_port: int = 0
    # The IMAP STARTTLS port clients are told; 0: the `[listen] imap` port, else 143.
    imap_port: int = 0
    # The POP3 over TLS port clients are told; 0: the `[listen] pop3s` port, else 995.
    pop3s_port: int = 0
    # The POP3 STLS port clients are told; 0: the `[listen] pop3` port, else 110.
    pop3_port: int = 0
    # The submission over TLS port clients are told; 0: the `[listen] submissions` port,
    # else 465.
    submissions_port: int = 0
    # The submission STARTTLS port clients are told; 0: the `[listen] submission` port,
    # else 587.
    submission_port: int = 0
    # The ManageSieve port clients are told (RFC 5804 §1.8: the `_sieve._tcp` SRV record); 0:
    # the `[listen] managesieve` port, else 4190.
    managesieve_port: int = 0
    # Where autodiscover JSON points Outlook for the XML (https://<host>:<https_port>/...); 0:
    # the https listener's port, else 443 (a reverse proxy in front of the http listener).
    https_port: int = 0


# RFC 6186 / RFC 8314 / IANA: the ports clients assume for each kind.
STANDARD_PORTS = {
    "imaps": 993,
    "imap": 143,
    "pop3s": 995,
    "pop3": 110,
    "submissions": 465,
    "submission": 587,
    "https": 443,
    "managesieve": 4190,
}


def advertised_port(
    config: Config, kind: str, bound: dict | None = None, loopback: bool = False
) -> int:
    """The port clients are told for `kind`: `[public]`, else the listener's (its bound port
    from `bound`, kind -> [(host, port)], when the server runs), else the standard one.
    `loopback`: a listener on a loopback address counts (autoconfig asked by a local client)."""
    explicit = getattr(config.public, f"{kind}_port")
    if explicit:
        return explicit
    if bound and bound.get(kind):
        addresses = bound[kind]
    else:
        addresses = [parse_listen_address(a) for a in getattr(config.listen, kind)]
    for host, port in addresses:
        if port and (loopback or not ipaddress.ip_address(host).is_loopback):
            return port
    return STANDARD_PORTS[kind]


def advertised_host(config: Config) -> str:
    """The host name clients are told (autoconfig): `[public] host`, else `hostname`, unless
    every mail listener is on a loopback address: then that address, which is what answers."""
    if config.public.host:
        return config.public.host
    hosts = [
        parse_listen_address(a)[0]
        for kind in STANDARD_PORTS
        if kind != "https"
        for a in getattr(config.listen, kind)
    ]
    if hosts and all(ipaddress.ip_address(h).is_loopback for h in hosts):
        return hosts[0]
    return config.hostname


@dataclass(frozen=True)
class TrustConfig:
    """Deliverability and inbound authentication (mailsuite/trust/): SPF, DKIM, DMARC, MTA-STS."""

    # SPF/DKIM/DMARC checks of mail arriving on the "smtp" listener (never on submission).
    inbound_checks: bool = True
    # Clients not checked (local scripts, content filters re-injecting), as policyd-spf skips.
    skip_networks: list[str] = field(default_factory=lambda: ["127.0.0.0/8", "::1/128"])
    # Action when DMARC fails and the From: domain publishes p=reject: "reject" (550 5.7.1),
    # "junk" (deliver to Junk) or "accept" (deliver, with the result in a header only).
    dmarc_reject: str = "reject"
    # Action when DMARC fails and the From: domain publishes p=quarantine: "reject", "junk" or
    # "accept", as for `dmarc_reject`.
    dmarc_quarantine: str = "junk"
    # Action on an SPF "fail" (the domain's -all) for MAIL FROM or HELO when no DKIM
    # signature passes: "reject", "junk" or "accept".
    spf_fail: str = "reject"
    # Action on an SPF "softfail" (the domain's ~all) when no DKIM signature passes:
    # "reject", "junk" or "accept".
    spf_softfail: str = "accept"
    # A DNS failure that could change the verdict: "tempfail" (451, sender retries) or "accept".
    dns_failure: str = "tempfail"
    # DNS servers for the SPF, DKIM and DMARC lookups ("ip", "ip:port", "[v6]:port");
    # empty: relay.resolvers, then /etc/resolv.conf.
    resolvers: list[str] = field(default_factory=list)
    # Seconds to wait for each DNS answer of those checks (then `dns_failure` applies).
    dns_timeout: float = 5.0
    # Sign outbound mail with DKIM.
    dkim_sign: bool = True
    # Selectors to sign with; empty: every key under data_dir/dkim/<domain>/.
    dkim_selectors: list[str] = field(default_factory=list)
    # The DMARC policy `mailsuite dns` proposes: "none", "quarantine" or "reject".
    dmarc_policy: str = "quarantine"
    # The rua= address for DMARC and TLSRPT reports; empty: postmaster@<domain>.
    report_address: str = ""
    # The MTA-STS policy mode served over HTTPS (RFC 8461 §3.2): "enforce", "testing" or
    # "none".
    mta_sts_mode: str = "testing"
    # The MTA-STS policy's max_age in seconds (at most 31557600).
    mta_sts_max_age: int = 604800
    # The MX names the MTA-STS policy lists; empty: the public host name.
    mta_sts_mx: list[str] = field(default_factory=list)

    def __post_init__(self):
        actions = ("reject", "junk", "accept")
        for key in ("dmarc_reject", "dmarc_quarantine", "spf_fail", "spf_softfail"):
            if getattr(self, key) not in actions:
                raise ConfigError(f"trust.{key}", 'must be "reject", "junk" or "accept"')
        for i, net in enumerate(self.skip_networks):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError:
                key = f"trust.skip_networks[{i}]"
                raise ConfigError(key, f"{net!r} is not a network") from None
        if self.dns_failure not in ("tempfail", "accept"):
            raise ConfigError("trust.dns_failure", 'must be "tempfail" or "accept"')
        if self.dmarc_policy not in ("none", "quarantine", "reject"):
            raise ConfigError("trust.dmarc_policy", 'must be "none", "quarantine" or "reject"')
        if self.mta_sts_mode not in ("enforce", "testing", "none"):
            raise ConfigError("trust.mta_sts_mode", 'must be "enforce", "testing" or "none"')
        # RFC 8461 §3.2: max_age is at most 31557600 seconds.
        if self.mta_sts_max_age > 31557600:
            raise ConfigError("trust.mta_sts_max_age", "RFC 8461 allows at most 31557600")


# ACME directories known by name (`[acme] directory`).
ACME_DIRECTORIES = {
    "letsencrypt": "https://acme-v02.api.letsencrypt.org/directory",
    "letsencrypt-staging": "https://acme-staging-v02.api.letsencrypt.org/directory",
}


@dataclass(frozen=True)
class AcmeConfig:
    """Certificates from an ACME CA (RFC 8555), obtained and renewed by the server itself
    (mailsuite/acme/, docs/production.md). Without an `[acme]` table ACME is off and `[tls]`
    names the certificate."""

    # Contact address given to the CA (expiry and policy notices); "" registers without one.
    email: str = ""
    # The CA's directory URL, or "letsencrypt" / "letsencrypt-staging" by name.
    directory: str = "letsencrypt"
    # Names the certificate covers; empty: `hostname`, plus mta-sts.<domain>, autoconfig.<domain>
    # and autodiscover.<domain> for each local domain when an http or https listener is on.
    hosts: list[str] = field(default_factory=list)
    # PEM file of the CA certificates to trust for the ACME server's HTTPS (a private or test
    # CA); unset: the system's trusted CAs.
    ca_file: Path | None = None
    # "http-01" (answered by the `http` listener, which must be reachable on port 80) or
    # "tls-alpn-01" (RFC 8737, answered by the TLS listeners; the CA connects to port 443, the
    # `https` listener).
    challenge: str = "http-01"

    @property
    def directory_url(self) -> str:
        return ACME_DIRECTORIES.get(self.directory, self.directory)


@dataclass(frozen=True)
class AccountsConfig:
    """What the admin command accepts for new accounts (mailsuite/accounts/)."""

    # The shortest password `mailsuite user add` and `user passwd` accept, in characters.
    # A password may also not be the user's local part or contain it.
    min_password_length: int = 10


@dataclass(frozen=True)
class StorageConfig:
    """How durable writes reach the disk (mailsuite/durable/)."""

    # "threads": plain system calls from a pool of threads with group commit, on every
    # system; the one way there is. "uring", an opt-in backend of earlier versions, is still
    # accepted: the server says in its log that it uses threads.
    io: str = "threads"

    def __post_init__(self):
        if self.io not in ("threads", "uring"):
            raise ConfigError("storage.io", 'must be "threads" or "uring"')


@dataclass(frozen=True)
class MetricsConfig:
    """The `metrics` listener (docs/monitoring.md)."""

    # Let `listen.metrics` name an address other than loopback: the figures (and /healthz)
    # then reach whoever can connect, so a firewall or a reverse proxy must guard the port.
    allow_remote: bool = False
    # /healthz answers 503 when the certificate the TLS listeners serve expires within this
    # many days.
    certificate_days: int = 7


@dataclass(frozen=True)
class JunkConfig:
    """The junk filter (mailsuite/junk/): a per-user learning filter, DNS lists, greylisting,
    rspamd."""

    # The built-in per-user filter: learns from moves into and out of Junk; an untrained
    # filter is neutral (everything goes to INBOX).
    enabled: bool = True
    # Score at or above which a message is filed in the user's Junk folder.
    junk_score: float = 5.0
    # Score at or above which mail from outside is refused at DATA (550 5.7.1); 0: never.
    reject_score: float = 15.0
    # Points the word statistics give: weight × (2 × probability − 1), so −weight … +weight.
    bayes_weight: float = 6.0
    # Messages of each kind (junk, not junk) the filter must have learned before it judges.
    min_trained: int = 10
    # Read messages left in INBOX this many days are learned as not junk (0: never).
    learn_read_after_days: int = 3
    # DNS blocklists of client addresses (RFC 5782), each an inline table:
    # {zone = "zen.spamhaus.org", action = "reject"} refuses a listed client at RCPT (554
    # 5.7.1); {zone = "...", weight = 3.0} adds points; "codes" lists the answers that count
    # ("127.0.0.2", "127.0.0.4-127.0.0.7"; default every 127.x but 127.0.0.1 and 127.255.255.x).
    dnsbl: list[dict[str, typing.Any]] = field(default_factory=list)

    # DNS allowlists, as dnsbl: {zone = "list.dnswl.org", weight = -3.0}; a listed client is
    # never greylisted.
    dnswl: list[dict[str, typing.Any]] = field(default_factory=list)

    # Domain lists (RFC 5782 §2.2) asked about the sender's domain and the link domains in the
    # message: {zone = "dbl.spamhaus.org", weight = 5.0}.
    domain_lists: list[dict[str, typing.Any]] = field(default_factory=list)

    # Greylisting (RFC 6647): a new (client network, sender, recipient) is told 451 4.7.1.
    greylist: bool = False

    # Seconds after the first attempt from which a retry passes.
    greylist_delay: int = 300

    # Seconds a passed triplet is remembered after its last use (35 days).
    greylist_expire: int = 35 * 24 * 3600

    # rspamd's normal worker, "http://127.0.0.1:11333" (empty: rspamd is not used).
    rspamd: str = ""

    # rspamd's controller for learning (empty: the rspamd host on port 11334).
    rspamd_controller: str = ""

    # The controller's password, when it has one.
    rspamd_password: str = ""

    # Seconds rspamd may take; a failing or slow rspamd falls back to the built-in filter.
    rspamd_timeout: float = 10.0

    def __post_init__(self):
        if self.reject_score and self.reject_score <= self.junk_score:
            raise ConfigError("junk.reject_score", "must be above junk.junk_score (or 0)")
        for name in ("dnsbl", "dnswl", "domain_lists"):
            for i, entry in enumerate(getattr(self, name)):
                _check_dns_list(entry, f"junk.{name}[{i}]")
        for name in ("rspamd", "rspamd_controller"):
            url = getattr(self, name)
            if url and not url.startswith(("http://", "https://")):
                raise ConfigError(f"junk.{name}", "must be an http:// or https:// URL")


def _check_dns_list(entry: dict, key: str) -> None:
    known = {"zone", "action", "weight", "codes"}
    for k in entry:
        if k not in known:
            raise ConfigError(f"{key}.{k}", "unknown key")
    if not isinstance(entry.get("zone"), str) or not entry["zone"].strip("."):
        raise ConfigError(f"{key}.zone", "must be a DNS zone name")
    if entry.get("action", "score") not in ("reject", "score"):
        raise ConfigError(f"{key}.action", 'must be "reject" or "score"')
    weight = entry.get("weight", 0.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)):
        raise ConfigError(f"{key}.weight", "must be a number")
    codes = entry.get("codes", [])
    if not isinstance(codes, list):
        raise ConfigError(f"{key}.codes", "must be a list of addresses or ranges")
    for j, code in enumerate(codes):
        for part in str(code).split("-", 1):
            try:
                ipaddress.IPv4Address(part.strip())
            except ValueError:
                raise ConfigError(f"{key}.codes[{j}]", f"{code!r} is not an address") from None


@dataclass(frozen=True)
class LogConfig:
    # "text" or "json" (one JSON object per line).
    format: str = "text"

    # "-" for standard output, or a file path (text lines in a file start with the local time,
    # ISO 8601 with milliseconds and UTC offset; on standard output the journal dates them).
    # Its folder is made (0700) at start if missing.
    file: str = "-"

    # "debug", "info", "warn" or "error".
    level: str = "info"


@dataclass(frozen=True)
class SieveConfig:
    """Server-side filtering (mailsuite/sieve/, docs/filtering.md): the scripts users keep
    and the limits on what one run may do."""

    # Run each account's active Sieve script at delivery (docs/filtering.md); false: every
    # message goes to INBOX (or Junk) as if no account had a script.
    enabled: bool = True
    # Scripts an account may store (ManageSieve QUOTA/MAXSCRIPTS).
    max_scripts: int = 20
    # Largest script in bytes (ManageSieve QUOTA/MAXSIZE).
    max_script_size: int = 65536
    # Addresses one message may be redirected to by a script.
    max_redirects: int = 4
    # Actions (keep, fileinto, redirect, vacation, reject) one run may take.
    max_actions: int = 32
    # Vacation replies go once per sender per this many days when the script gives no :days.
    vacation_days: int = 7
    # The shortest period between two replies to one sender a script may ask for (a smaller
    # :days or :seconds is raised to this); 0 allows a reply to every message.
    vacation_min_days: float = 1.0
    # Folder of the scripts `include :global "name"` reads (name.sieve); relative to the
    # config file; empty: no global scripts.
    global_dir: Path | None = None


@dataclass(frozen=True)
class Config:
    # This server's name: greeting, HELO, Received, certificate name.
    hostname: str = "mail.example.test"

    # Local domains (`mailsuite domain add` adds more).
    domains: list[str] = field(default_factory=lambda: ["example.test"])

    # Maildirs, queue and the accounts database.
    data_dir: Path = Path("data")

    # The account the server runs as: started as root, `mailsuite serve` binds its listeners,
    # then becomes this user before it opens anything under data_dir; admin commands run as
    # root become it too, so what they create is its (docs/production.md). Without `user`,
    # admin commands run as root become the owner of data_dir when that is not root.
    user: str = ""

    # The group to run as with `user`; empty: the user's own group.
    group: str = ""

    # Run as root when no `user` is set: refused otherwise (exit 78), so that a mistake does
    # not expose the whole machine to the network.
    allow_root: bool = False

    tls: TlsConfig = field(default_factory=TlsConfig)
    listen: ListenConfig = field(default_factory=ListenConfig)
    auth: AuthConfig = field(default_factory=AuthConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    pop3: Pop3Config = field(default_factory=Pop3Config)
    imap: ImapConfig = field(default_factory=ImapConfig)
    managesieve: ManageSieveConfig = field(default_factory=ManageSieveConfig)
    relay: RelayConfig = field(default_factory=RelayConfig)
    public: PublicConfig = field(default_factory=PublicConfig)
    log: LogConfig = field(default_factory=LogConfig)
    trust: TrustConfig = field(default_factory=TrustConfig)
    accounts: AccountsConfig = field(default_factory=AccountsConfig)
    # Certificates from an ACME CA such as Let's Encrypt; no `[acme]` table: ACME off.
    acme: AcmeConfig | None = None
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    sieve: SieveConfig = field(default_factory=SieveConfig)
    junk: JunkConfig = field(default_factory=JunkConfig)
    path: Path | None = None

    @property
    def public_host(self) -> str:
        return self.public.host or self.hostname

    @property
    def accounts_db(self) -> Path:
        return self.data_dir / "accounts.sqlite"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def queue_dir(self) -> Path:
        return self.data_dir / "queue"


def config_path(cli_value: str | None) -> Path | None:
    """--config wins, then $MAILSUITE_CONFIG, then conf/mailsuite.toml if it exists; None:
    none of them, the embedded default applies."""
    if cli_value:
        return Path(cli_value)
    env = os.environ.get("MAILSUITE_CONFIG")
    if env:
        return Path(env)
    return DEFAULT_CONFIG if DEFAULT_CONFIG.is_file() else None


def embedded_base() -> Path:
    """The folder the embedded default's relative paths (data, certificate) are taken in:
    $XDG_DATA_HOME/mailsuite, else ~/.local/share/mailsuite (XDG Base Directory spec: a
    relative $XDG_DATA_HOME is invalid and ignored)."""
    xdg = os.environ.get("XDG_DATA_HOME", "")
    root = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return root / "mailsuite"


def is_embedded(config: Config) -> bool:
    """True for a Config read from the embedded default."""
    return config.path == EMBEDDED_CONFIG


def load_config(path: Path | None) -> Config:
    """The config file at `path`, or the embedded default (relative to `embedded_base()`)."""
    if path is None or path.resolve() == EMBEDDED_CONFIG:
        data = tomllib.loads(EMBEDDED_CONFIG.read_text(encoding="utf-8"))
        return config_from_dict(data, base=embedded_base(), path=EMBEDDED_CONFIG)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ConfigError("", f"cannot read config file {path}: {e.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ConfigError("", f"{path}: not valid TOML: {e}") from None
    return config_from_dict(data, base=path.resolve().parent, path=path.resolve())


def config_from_dict(data: dict, base: Path, path: Path | None = None) -> Config:
    """Every path in the config, given or defaulted, is taken relative to `base` (the config
    file's folder)."""
    cfg = _build(Config, data, "", base)
    tls_table = data.get("tls") if isinstance(data.get("tls"), dict) else {}
    if "self_signed" not in tls_table and ("cert" in tls_table or "key" in tls_table):
        cfg = dataclasses.replace(cfg, tls=dataclasses.replace(cfg.tls, self_signed=False))
    if cfg.log.file != "-":
        log_file = os.path.normpath(base / cfg.log.file)
        cfg = dataclasses.replace(cfg, log=dataclasses.replace(cfg.log, file=log_file))
    ca_file = cfg.relay.smarthost.get("ca_file")
    if isinstance(ca_file, str) and ca_file:
        smarthost = dict(cfg.relay.smarthost, ca_file=os.path.normpath(base / ca_file))
        cfg = dataclasses.replace(cfg, relay=dataclasses.replace(cfg.relay, smarthost=smarthost))
    cfg = dataclasses.replace(cfg, path=path)
    _validate(cfg)
    return cfg


def _build(cls: type, data: typing.Any, prefix: str, base: Path):
    if not isinstance(data, dict):
        raise ConfigError(prefix, "must be a table")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "path"}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else key
        if key not in names:
            raise ConfigError(dotted, "unknown key")
        kwargs[key] = _convert(hints[key], value, dotted, base)
    # A table left out is built from its defaults here, so that its paths are resolved too.
    for f in dataclasses.fields(cls):
        if f.name not in kwargs and f.name in names and dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], {}, f"{prefix}.{f.name}".lstrip("."), base)
    obj = cls(**kwargs)
    # Relative paths are relative to the config file's folder, defaults included.
    for f in dataclasses.fields(cls):
        value = getattr(obj, f.name)
        if isinstance(value, Path) and not value.is_absolute():
            object.__setattr__(obj, f.name, Path(os.path.normpath(base / value)))
    return obj


def _convert(hint, value, key: str, base: Path):
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, key, base)
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        tables = [a for a in typing.get_args(hint) if dataclasses.is_dataclass(a)]
        if tables:  # an optional table: present in the file means on
            return _build(tables[0], value, key, base)
    if hint is Path or (
        origin in (typing.Union, types.UnionType) and Path in typing.get_args(hint)
    ):
        if not isinstance(value, str) or not value:
            raise ConfigError(key, "must be a non-empty path string")
        return Path(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, "must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, "must be an integer")
        if value < 0:
            raise ConfigError(key, "must not be negative")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, "must be a number")
        if value < 0:
            raise ConfigError(key, "must not be negative")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, "must be a string")
        return value
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(key, "must be a list")
        return [_convert(item, v, f"{key}[{i}]", base) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(key, "must be a table")
        _, vt = typing.get_args(hint)
        if vt is typing.Any:
            return dict(value)
        return {k: _convert(vt, v, f"{key}.{k}", base) for k, v in value.items()}
    raise ConfigError(key, f"unsupported type {hint!r}")  # pragma: no cover


def parse_listen_address(text: str, key: str = "listen") -> tuple[str, int]:
    """'host:port', '[v6]:port' or ':port' (all addresses) into (host, port)."""
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ConfigError(key, f"{text!r}: expected [ipv6]:port")
    else:
        host, sep, port = text.rpartition(":")
        if not sep:
            raise ConfigError(key, f"{text!r}: expected host:port")
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(key, f"{text!r}: bad port")
    if host in ("", "*"):
        host = "::" if text.startswith("[") else "0.0.0.0"
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if host != "localhost":
            raise ConfigError(key, f"{text!r}: host must be an IP address") from None
        host = "127.0.0.1"
    return host, int(port)


def _validate(cfg: Config) -> None:
    if not cfg.hostname or " " in cfg.hostname:
        raise ConfigError("hostname", "must be a host name")
    for i, d in enumerate(cfg.domains):
        if not d or "@" in d or " " in d:
            raise ConfigError(f"domains[{i}]", f"{d!r} is not a domain name")
    for f in dataclasses.fields(ListenConfig):
        for i, addr in enumerate(getattr(cfg.listen, f.name)):
            parse_listen_address(addr, f"listen.{f.name}[{i}]")
    for i, addr in enumerate(cfg.listen.metrics):
        host = parse_listen_address(addr)[0]
        if not (cfg.metrics.allow_remote or ipaddress.ip_address(host).is_loopback):
            raise ConfigError(
                f"listen.metrics[{i}]", "loopback only, unless metrics.allow_remote = true"
            )
    for key in ("user", "group"):
        name = getattr(cfg, key)
        if name and (name != name.strip() or ":" in name or "\n" in name):
            raise ConfigError(key, f"{name!r} is not a user or group name")
    if cfg.group and not cfg.user:
        raise ConfigError("group", "needs `user`")
    if cfg.auth.plaintext not in ("never", "loopback"):
        raise ConfigError("auth.plaintext", 'must be "never" or "loopback"')
    for name in ("free_failures", "lockout_failures", "ip_lockout_failures", "ip_free_failures"):
        if getattr(cfg.auth, name) < 0:
            raise ConfigError(f"auth.{name}", "must not be negative")
    if cfg.auth.known_good_entries < 0:
        raise ConfigError("auth.known_good_entries", "must not be negative")
    if cfg.smtp.bare_newline not in ("reject", "normalize"):
        raise ConfigError("smtp.bare_newline", 'must be "reject" or "normalize"')
    if cfg.smtp.max_command_line < 512:
        raise ConfigError("smtp.max_command_line", "RFC 5321 §4.5.3.1.4 requires at least 512")
    if cfg.smtp.max_text_line < 1000:
        raise ConfigError("smtp.max_text_line", "RFC 5321 §4.5.3.1.6 requires at least 1000")
    if cfg.smtp.max_hops < 1:
        raise ConfigError("smtp.max_hops", "must be at least 1 (every relayed message has one)")
    if cfg.pop3.idle_timeout < 600:
        raise ConfigError("pop3.idle_timeout", "RFC 1939 requires at least 600 seconds")
    if cfg.imap.idle_timeout < 1800:
        raise ConfigError("imap.idle_timeout", "RFC 3501 §5.4 requires at least 1800 seconds")
    if cfg.tls.min_version not in ("1.2", "1.3"):
        raise ConfigError("tls.min_version", 'must be "1.2" or "1.3"')
    if cfg.accounts.min_password_length < 1:
        raise ConfigError("accounts.min_password_length", "must be 1 or more")
    if cfg.log.format not in ("text", "json"):
        raise ConfigError("log.format", 'must be "text" or "json"')
    for domain, target in cfg.relay.routes.items():
        parse_route(target, f"relay.routes.{domain}")
    sh = cfg.relay.smarthost
    if sh:
        known = {"host", "port", "tls", "username", "password", "tls_verify", "ca_file"}
        for k in sh:
            if k not in known:
                raise ConfigError(f"relay.smarthost.{k}", "unknown key")
        if not isinstance(sh.get("host"), str):
            raise ConfigError("relay.smarthost.host", "must be a host name")
        if sh.get("tls", "starttls") not in ("starttls", "implicit", "none"):
            raise ConfigError("relay.smarthost.tls", 'must be "starttls", "implicit" or "none"')
        if not isinstance(sh.get("tls_verify", False), bool):
            raise ConfigError("relay.smarthost.tls_verify", "must be true or false")
        if "ca_file" in sh and not (
            isinstance(sh["ca_file"], str) and os.path.isfile(sh["ca_file"])
        ):
            raise ConfigError("relay.smarthost.ca_file", "must be the path of a PEM file")
    if cfg.acme is not None:
        _validate_acme(cfg)


def _validate_acme(cfg: Config) -> None:
    acme = cfg.acme
    if acme.challenge not in ("http-01", "tls-alpn-01"):
        raise ConfigError("acme.challenge", 'must be "http-01" or "tls-alpn-01"')
    if acme.challenge == "http-01" and not cfg.listen.http:
        raise ConfigError("acme.challenge", "http-01 needs the `http` listener (port 80)")
    if acme.challenge == "tls-alpn-01" and not cfg.listen.https:
        raise ConfigError("acme.challenge", "tls-alpn-01 needs the `https` listener (port 443)")
    if not acme.directory_url.startswith(("https://", "http://")):
        raise ConfigError(
            "acme.directory", 'must be an https:// URL, "letsencrypt" or "letsencrypt-staging"'
        )
    for i, host in enumerate(acme.hosts):
        if not host or " " in host or "/" in host or "@" in host:
            raise ConfigError(f"acme.hosts[{i}]", f"{host!r} is not a host name")
    if acme.ca_file is not None and not acme.ca_file.is_file():
        raise ConfigError("acme.ca_file", f"{acme.ca_file} is not a file")


def parse_route(text: str, key: str) -> tuple[str, int]:
    """A route target 'host:port' (host may be a name) or 'host' (port 25)."""
    if not isinstance(text, str) or not text:
        raise ConfigError(key, "must be host or host:port")
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.lstrip(":") or "25"
    elif text.count(":") == 1:
        host, _, port = text.partition(":")
    else:
        host, port = text, "25"
    if not port.isdigit() or not 0 < int(port) <= 65535:
        raise ConfigError(key, f"{text!r}: bad port")
    return host, int(port)
