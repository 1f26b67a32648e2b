"""The HTTP listener: one twisted.web Resource that routes the client self-setup endpoints.

Everything here is about refusing safely: an unknown domain or path is the same bare 404 (no
hint whether a domain or user exists), unreadable XML is 400, a body over MAX_BODY is 413, and
no exception ever reaches the client as a traceback.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from twisted.internet import reactor
from twisted.logger import Logger
from twisted.web import http, resource, server

from mailsuite.acme.challenges import HTTP_CHALLENGE_PREFIX
from mailsuite.limits import PER_ADDRESS, AdmittedConnection
from mailsuite.logtext import visible
from mailsuite.trust.mtasts import mta_sts_policy
from mailsuite.web import autoconfig, autodiscover, mobileconfig
from mailsuite.web.settings import BadAddress, ClientSettings, normalize_domain, split_address

log = Logger()

# An Outlook POX request is a few hundred bytes; nothing we serve needs more than this.
MAX_BODY = 64 * 1024
# Idle HTTP connections are closed after this many seconds.
HTTP_TIMEOUT = 60
# A request must have arrived whole (and been answered) this many seconds after the
# connection opened or its previous answer: input does not reset it.
REQUEST_DEADLINE = 30
SERVER_HEADER = b"mailsuite"
# Pipelined requests answered on one connection before the reactor serves the others.
REQUESTS_PER_TURN = 16

_NOT_FOUND = b"Not Found\n"


class HttpError(Exception):
    """A refusal carrying its status code; turned into a plain-text reply in one place."""

    def __init__(self, code: int, body: bytes = b""):
        super().__init__(code)
        self.code = code
        self.body = body


class BoundedRequest(server.Request):
    """A Request that never stores more than MAX_BODY bytes of body.

    A declared Content-Length over the limit is answered 413 at once and the connection
    closed; an undeclared (chunked) body is counted and discarded past the limit, and the
    request answered 413 once it ends.
    """

    too_large = False
    _received = 0
    _answered_early = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > MAX_BODY:
            self.too_large = True
            self.content = io.BytesIO()
            # RFC 9110 §15.5.14: 413, and we may close the connection to stop the upload.
            body = b"Request body too large\n"
            self.channel.transport.writeSequence(
                [
                    b"HTTP/1.1 413 Content Too Large\r\n",
                    b"Server: " + SERVER_HEADER + b"\r\n",
                    b"Content-Type: text/plain; charset=utf-8\r\n",
                    b"Content-Length: %d\r\n" % len(body),
                    b"Connection: close\r\n\r\n",
                    body,
                ]
            )
            self.channel.transport.loseConnection()
            self.channel.setTimeout(None)
            self._answered_early = True
            return
        self.content = io.BytesIO()

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > MAX_BODY:
            self.too_large = True
            return
        if not self.too_large:
            self.content.write(data)

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._answered_early:
            return  # the 413 is already on its way; the rest of the body is ignored
        super().requestReceived(command, path, version)


class DeadlineChannel(http.HTTPChannel, AdmittedConnection):
    """An HTTP connection that holds a slot of the connection limiter, like every mail
    listener's, and whose next request must arrive whole within REQUEST_DEADLINE.

    twisted.web's timeout is an idle timeout, moved by every byte: a client sending a header
    line every few seconds (slowloris) held its connection for ever. This deadline counts
    from the connection's start and again from each answer, whatever arrives meanwhile.
    The Site's `connections` (a `ConnectionLimiter`, or None) gives the slots: HTTP has no
    login, so an HTTP connection is never established and is among the first closed to make
    room.
    """

    _input_since_answer = False
    _refused = False
    _in_head = False  # between a request line and the blank line ending its header fields
    # Answers written in a row in the reactor turn of their request (`paced`).
    answered_in_a_row = 0

    def connectionMade(self) -> None:
        super().connectionMade()
        ip = getattr(self.transport.getPeer(), "host", "") or ""
        refusal = self.take_slot(getattr(self.site, "connections", None), ip)
        if refusal is not None:
            self._refused = True
            log.info(
                "web: refusing a connection from {ip}: too many connections {where}",
                ip=ip,
                where="from this address" if refusal == PER_ADDRESS else "to this server",
            )
            self._say_and_close(b"503 Service Unavailable")
            return
        self.start_deadline(REQUEST_DEADLINE, self._request_too_slow)

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        self._input_since_answer = True
        self.note_input()
        super().dataReceived(data)

    def connectionLost(self, reason: Any) -> None:
        self.give_back_slot()
        super().connectionLost(reason)

    def lineReceived(self, line: bytes) -> None:
        if line:
            self._in_head = True
        elif self._in_head:
            self._in_head = False
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        """A line past MAX_LENGTH (16 KiB): say which, instead of twisted.web's silent close.
        RFC 9110 §15.5.15: 414 for a request line (its target) too long; RFC 6585 §5: 431 for
        a header field."""
        self._say_and_close(
            b"431 Request Header Fields Too Large" if self._in_head else b"414 URI Too Long"
        )

    # -- output back-pressure ----------------------------------------------------------------

    def pauseProducing(self) -> None:
        """The transport's buffer is full: stop reading the client, also in the middle of a
        request.  twisted.web stops reading only between requests; while one is being
        answered it buffers whatever arrives and, once the transport has paused it, no longer
        stops at its eager-read bound, so a client pipelining requests and reading nothing had
        them read and answered into the transport's buffer without end."""
        super().pauseProducing()
        self._networkProducer.pauseProducing()

    def requestDone(self, request: http.Request) -> None:
        self._input_since_answer = False
        if self._deadline is not None:
            self.start_deadline(REQUEST_DEADLINE, self._request_too_slow)
        super().requestDone(request)

    # -- the connection's slot (mailsuite.limits) ---------------------------------------------

    def is_established(self) -> bool:
        return False

    def evict(self) -> None:
        if self._input_since_answer:
            self._say_and_close(b"503 Service Unavailable")
        else:
            self.timeoutConnection()

    def _request_too_slow(self) -> None:
        if self._input_since_answer:
            # RFC 9110 §15.5.9: 408 for a request not completed in time, then close.
            log.info(
                "web: closing the connection from {ip}: no whole request within {seconds} s",
                ip=getattr(self.transport.getPeer(), "host", "?"),
                seconds=REQUEST_DEADLINE,
            )
            self._say_and_close(b"408 Request Timeout")
            return
        # An idle keep-alive connection is closed without a word, as its idle timeout would.
        self.timeoutConnection()

    def _say_and_close(self, status: bytes) -> None:
        """An answer of `status` with no body, outside twisted.web's request cycle, and close."""
        self.setTimeout(None)
        self.transport.write(
            b"HTTP/1.1 " + status + b"\r\nServer: " + SERVER_HEADER + b"\r\n"
            b"Content-Length: 0\r\nConnection: close\r\n\r\n"
        )
        self.loseConnection()


def paced(request: server.Request, body: bytes) -> bytes | int:
    """What a synchronous `render` returns for `body`: the body itself, or every
    REQUESTS_PER_TURN-th answer in a row on one connection, NOT_DONE_YET and the answer
    written on the next reactor turn.

    twisted.web reads a pipelined request only when the one before it has finished, and
    finishes a synchronous answer at once: every request of one read would be answered in the
    same reactor turn, with the other connections waiting."""
    channel = request.channel
    in_a_row = getattr(channel, "answered_in_a_row", 0) + 1
    if in_a_row < REQUESTS_PER_TURN:
        channel.answered_in_a_row = in_a_row
        return body
    channel.answered_in_a_row = 0
    return _finish_on_next_turn(request, body)


def _finish_on_next_turn(request: server.Request, body: bytes) -> int:
    """Write `body` and finish `request` on the next reactor turn (unless the client has gone)."""
    gone: list[bool] = []
    request.notifyFinish().addErrback(lambda _: gone.append(True))
    request.setHeader(b"content-length", b"%d" % len(body))

    def finish() -> None:
        if not gone:
            request.write(body)  # twisted.web drops the body of a HEAD answer itself
            request.finish()

    reactor.callLater(0, finish)
    return server.NOT_DONE_YET


def _arg(request: server.Request, *names: str) -> str | None:
    """The first query argument among `names`, matched case-insensitively."""
    wanted = {n.lower().encode() for n in names}
    for key, values in request.args.items():
        if key.lower() in wanted and values:
            try:
                return values[0].decode("utf-8")
            except UnicodeDecodeError:
                raise HttpError(400, b"Bad query argument\n") from None
    return None


def _host_domain(request: server.Request, prefixes: tuple[str, ...]) -> str | None:
    """The mail domain named by the Host header, without an 'autoconfig.'-style prefix."""
    raw = request.getHeader(b"host")
    if not raw:
        return None
    host = normalize_domain(raw.decode("latin-1"))
    if host is None:
        return None
    for p in prefixes:
        if host.startswith(p) and len(host) > len(p):
            return host[len(p) :]
    return host


class ClientSetupResource(resource.Resource):
    """Routes every path; a leaf so that twisted.web's own child lookup is never involved."""

    isLeaf = True

    def __init__(self, services: Any):
        super().__init__()
        self.services = services
        self.config = services.config
        self._settings: ClientSettings | None = None
        self.routes: dict[str, tuple[tuple[bytes, ...], Callable[[server.Request], bytes]]] = {
            "/mail/config-v1.1.xml": ((b"GET", b"HEAD"), self.autoconfig),
            "/.well-known/autoconfig/mail/config-v1.1.xml": ((b"GET", b"HEAD"), self.autoconfig),
            "/autodiscover/autodiscover.xml": ((b"GET", b"HEAD", b"POST"), self.autodiscover),
            "/autodiscover/autodiscover.json": ((b"GET", b"HEAD"), self.autodiscover_json),
            "/apple/mobileconfig": ((b"GET", b"HEAD"), self.apple_profile),
            "/.well-known/mta-sts.txt": ((b"GET", b"HEAD"), self.mta_sts),
        }

    @property
    def settings(self) -> ClientSettings:
        """Built at the first request, when every listener has its port (port 0 included)."""
        if self._settings is None:
            bound = getattr(self.services, "listening", None)
            self._settings = ClientSettings.from_config(self.config, bound)
        return self._settings

    # -- dispatch -----------------------------------------------------------------------------

    def render(self, request: server.Request) -> bytes | int:
        return paced(request, self._answer(request))

    def _answer(self, request: server.Request) -> bytes:
        request.setHeader(b"server", SERVER_HEADER)
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"cache-control", b"no-store")
        try:
            if getattr(request, "too_large", False):
                raise HttpError(413, b"Request body too large\n")
            return self._dispatch(request)
        except HttpError as e:
            return self._refuse(request, e.code, e.body)
        except Exception:
            log.failure("web: unexpected error on {path}", path=request.path)
            return self._refuse(request, 500, b"Internal error\n")

    def _dispatch(self, request: server.Request) -> bytes:
        if request.path.startswith(HTTP_CHALLENGE_PREFIX.encode()):
            return self.acme_challenge(request)
        path = unquote(request.path.decode("latin-1")).lower()
        # Outlook asks /autodiscover/autodiscover.json/v1.0/<address>?Protocol=AutodiscoverV1 too.
        if path.startswith("/autodiscover/autodiscover.json/"):
            path = "/autodiscover/autodiscover.json"
        route = self.routes.get(path.rstrip("/") if path != "/" else path)
        if route is None:
            raise HttpError(404)
        methods, handler = route
        if request.method not in methods:
            request.setHeader(b"allow", b", ".join(methods))
            raise HttpError(405, b"Method Not Allowed\n")
        return handler(request)

    def _refuse(self, request: server.Request, code: int, body: bytes) -> bytes:
        if code == 404:
            body = _NOT_FOUND  # identical for unknown paths, domains and addresses
        if code >= 400 and code != 404:
            peer = request.getClientAddress()
            log.info(
                "web: {code} for {method} {path} from {ip}",
                code=code,
                method=visible(request.method, 20),
                path=visible(request.path),
                ip=getattr(peer, "host", "?"),
            )
        request.setResponseCode(code)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return body or b"Error\n"

    # -- domain policy ------------------------------------------------------------------------

    def serves(self, domain: str | None) -> bool:
        """Whether `domain` is one of ours (config.domains or the accounts DB)."""
        if not domain:
            return False
        if domain in {d.lower() for d in self.config.domains}:
            return True
        accounts = getattr(self.services, "accounts", None)
        if accounts is not None:
            return bool(accounts.is_local_domain(domain))
        return False

    def _address(self, text: str) -> tuple[str, str]:
        """(address, domain) for a served domain; 400 when malformed, 404 when not ours."""
        try:
            local, domain = split_address(text)
        except BadAddress:
            raise HttpError(400, b"Bad e-mail address\n") from None
        if not self.serves(domain):
            raise HttpError(404)
        return f"{local}@{domain}", domain

    # -- endpoints ----------------------------------------------------------------------------

    def autoconfig(self, request: server.Request) -> bytes:
        text = _arg(request, "emailaddress")
        if text:
            address, domain = self._address(text)
        else:
            address = None
            domain = _host_domain(request, ("autoconfig.",))
            if not self.serves(domain):
                raise HttpError(404)
        request.setHeader(b"content-type", b"application/xml; charset=utf-8")
        return autoconfig.autoconfig_xml(self.settings, domain, address)

    def autodiscover(self, request: server.Request) -> bytes:
        if request.method == b"POST":
            try:
                text = autodiscover.parse_pox_request(request.content.getvalue())
            except autodiscover.MalformedRequest:
                raise HttpError(400, b"Malformed autodiscover request\n") from None
        else:
            text = _arg(request, "emailaddress", "email")
            if not text:
                raise HttpError(400, b"Missing EMailAddress\n")
        address, _ = self._address(text)
        request.setHeader(b"content-type", b"application/xml; charset=utf-8")
        return autodiscover.pox_response(self.settings, address)

    def autodiscover_json(self, request: server.Request) -> bytes:
        text = _arg(request, "email")
        if not text:
            tail = request.path.decode("latin-1").split("/v1.0/", 1)
            text = unquote(tail[1]) if len(tail) == 2 else None
        if not text:
            raise HttpError(400, b"Missing Email\n")
        self._address(text)
        try:
            body = autodiscover.json_redirect(self.settings, _arg(request, "protocol") or "")
        except autodiscover.UnsupportedProtocol:
            raise HttpError(400, b"Unsupported protocol; only AutodiscoverV1\n") from None
        request.setHeader(b"content-type", b"application/json")
        return body

    def apple_profile(self, request: server.Request) -> bytes:
        text = _arg(request, "emailaddress", "email")
        if not text:
            raise HttpError(400, b"Missing emailaddress\n")
        address, _ = self._address(text)
        request.setHeader(b"content-type", mobileconfig.CONTENT_TYPE)
        name = mobileconfig.filename(address).encode("ascii")
        request.setHeader(b"content-disposition", b'attachment; filename="' + name + b'"')
        return mobileconfig.mobileconfig(self.settings, address)

    def acme_challenge(self, request: server.Request) -> bytes:
        # RFC 8555 §8.3: the CA fetches the key authorization for its token (case matters, so
        # the path is not folded); any Host, since the token alone names the challenge.
        if request.method not in (b"GET", b"HEAD"):
            request.setHeader(b"allow", b"GET, HEAD")
            raise HttpError(405, b"Method Not Allowed\n")
        acme = getattr(self.services, "acme", None)
        answer = acme.challenges.http_answer(request.path.decode("latin-1")) if acme else None
        if answer is None:
            raise HttpError(404)
        request.setHeader(b"content-type", b"application/octet-stream")
        return answer.encode("ascii")

    def mta_sts(self, request: server.Request) -> bytes:
        # RFC 8461 §3.3: the policy is fetched from https://mta-sts.<domain>/.well-known/...
        domain = _host_domain(request, ("mta-sts.",))
        if not self.serves(domain):
            raise HttpError(404)
        policy = mta_sts_policy(self.config, domain)
        if not policy:
            raise HttpError(404)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return policy.encode("utf-8") if isinstance(policy, str) else bytes(policy)


def guarded_site(root: resource.Resource, services: Any) -> server.Site:
    """A twisted.web Site under the rules of every HTTP listener (web and metrics): a slot
    of the connection limiter, a request whole within REQUEST_DEADLINE, a bounded body,
    answers paced per reactor turn (`paced`), no tracebacks shown."""
    site = server.Site(root, timeout=HTTP_TIMEOUT)
    site.requestFactory = BoundedRequest
    site.protocol = DeadlineChannel
    site.displayTracebacks = False
    site.connections = getattr(services, "connections", None)
    return site


def build_site(services: Any) -> server.Site:
    """The twisted.web Site serving the client self-setup endpoints."""
    site = guarded_site(ClientSetupResource(services), services)
    site.noisy = False
    return site


def build_factory(services: Any, kind: str) -> server.Site:
    """Listener factory for `[listen] http` (and `https`, which app.py wraps in TLS)."""
    if kind not in ("http", "https"):
        raise ValueError(f"web cannot serve listener kind {kind!r}")
    return build_site(services)
