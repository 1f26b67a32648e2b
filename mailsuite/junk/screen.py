"""The checks of one inbound SMTP connection before its message is stored: DNS lists of the
client (started at connection, awaited at RCPT), greylisting at RCPT, and after DATA the
domain lists and rspamd.

What the session gets back: `Refusal` (the SMTP reply to send instead of 250) or a list of
`Signal`s that travel with the envelope to the filter's verdict at delivery.
"""

from __future__ import annotations

import math

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.junk.dnslists import Listing
from mailsuite.junk.tokens import url_domains
from mailsuite.junk.verdict import Signal
from mailsuite.logtext import visible
from mailsuite.trust import spf

log = Logger(namespace="mailsuite.junk")


class Refusal(Exception):
    """The reply to give instead of accepting (a DNSBL listing, greylisting, rspamd)."""

    def __init__(self, code: int, enhanced: str, text: str):
        super().__init__(f"{code} {enhanced} {text}")
        self.code = code
        self.enhanced = enhanced
        self.text = text


class ClientScreen:
    """One connection's screening (made by `JunkFilter.screen`)."""

    def __init__(self, junk, client_ip: str, skipped: bool):
        self.junk = junk
        self.client_ip = client_ip
        # [trust] skip_networks clients (local scripts, content filters) are not looked up
        # or greylisted; rspamd still sees their mail.
        self.skipped = skipped
        self.blocked: list[Listing] = []
        self.allowed: list[Listing] = []
        if skipped:
            self._listed = defer.succeed(None)
        else:
            checker = junk.dns_lists
            self._listed = checker.check_client(client_ip).addCallback(self._listing)

    def _listing(self, found) -> None:
        self.blocked, self.allowed = found
        for hit in self.blocked + self.allowed:
            log.info(
                "junk: client {ip} listed by {zone} ({code})",
                ip=self.client_ip,
                zone=hit.dns_list.zone,
                code=hit.code,
            )

    def at_rcpt(self, sender: str, recipient: str, helo: str) -> defer.Deferred:
        """Fires when the recipient may be accepted; errbacks with Refusal."""
        d = defer.Deferred()
        self._listed.addBoth(lambda _: d.callback(None))
        d.addCallback(self._check_lists)
        if self.junk.greylist is not None and not self.skipped:
            d.addCallback(
                lambda _: defer.Deferred.fromCoroutine(self._greylist(sender, recipient, helo))
            )
        return d

    def _check_lists(self, _=None) -> None:
        for hit in self.blocked:
            if hit.dns_list.action == "reject":
                # RFC 5782 §1 use, worded as Postfix does so that senders recognise it.
                raise Refusal(
                    554,
                    "5.7.1",
                    f"Service unavailable; client [{self.client_ip}] blocked using "
                    f"{hit.dns_list.zone}",
                )

    async def _greylist(self, sender: str, recipient: str, helo: str) -> None:
        grey = self.junk.greylist
        if self.allowed:
            return  # RFC 6647 §5: clients on an allowlist are not greylisted
        io = self.junk.store.io
        wait = await io.submit(grey.check, self.client_ip, sender, recipient)
        if not wait:
            return
        domain = sender.rpartition("@")[2]
        if domain and await io.submit(grey.known_domain, domain):
            result = await spf.check_mail_from(self.junk.lookup(), self.client_ip, sender, helo)
            if result.result == "pass":
                await io.submit(grey.pass_triplet, self.client_ip, sender, recipient)
                return
        log.info(
            "junk: greylisted {ip} from=<{sender}> to=<{rcpt}>",
            ip=self.client_ip,
            sender=visible(sender),
            rcpt=visible(recipient),
        )
        # RFC 6647 §2.1: a temporary failure the sender's retry will pass.
        raise Refusal(
            451,
            "4.7.1",
            f"Greylisted: this server has not seen mail from your network for <{recipient}> "
            f"before; please retry in {math.ceil(wait)} seconds",
        )

    def signals(self) -> list[Signal]:
        """The client's DNS list hits as the filter's evidence."""
        out = []
        for hit in self.blocked:
            out.append(Signal(f"DNSBL {hit.dns_list.zone} {hit.code}", hit.dns_list.weight))
        for hit in self.allowed:
            out.append(Signal(f"DNSWL {hit.dns_list.zone} {hit.code}", hit.dns_list.weight))
        return out

    async def after_data(self, envelope, data: bytes) -> list[Signal]:
        """Signals for the message: the client's lists, domain lists for the sender's
        domain and link domains, rspamd's answer; raises Refusal when rspamd says so."""
        signals = self.signals()
        checker = self.junk.dns_lists
        if checker.domain_lists and not self.skipped:
            domains = [envelope.mail_from.rpartition("@")[2]] if envelope.mail_from else []
            domains += url_domains(data)
            for hit in await checker.check_domains([d for d in domains if d]):
                signals.append(
                    Signal(f"domain list {hit.dns_list.zone}: {hit.subject}", hit.dns_list.weight)
                )
        if self.junk.rspamd is not None:
            signals.extend(await self.junk.rspamd.check(envelope, data))
        return signals


def after_data(screen: ClientScreen | None, envelope, data: bytes) -> defer.Deferred:
    """Deferred[list[Signal]] (errbacks only with Refusal): [] without a screen."""
    if screen is None:
        return defer.succeed([])
    return defer.Deferred.fromCoroutine(screen.after_data(envelope, data))
