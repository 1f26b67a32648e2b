"""Deliverability and trust: DKIM signing, SPF/DKIM/DMARC checks, Authentication-Results.

Outbound, `dkim.sign` adds DKIM-Signature headers for local domains before the relay sends.
Inbound, `inbound.check_inbound` runs SPF (RFC 7208), DKIM (RFC 6376) and DMARC (RFC 7489) on
mail arriving on the "smtp" listener and returns a verdict plus an Authentication-Results header
(RFC 8601).  `dnsrecords` prints (and checks) the DNS records a domain needs.
"""
