"""Junk mail: a per-user filter that learns from the user's moves, allow and block lists, DNS
lists (RFC 5782), greylisting (RFC 6647) and rspamd.

Between delivery and the shared services: delivery asks `filter.JunkFilter.judge` for each
local recipient's verdict; SMTP asks `screen` before DATA; IMAP reports moves and flags to the
filter, which learns from them off the reactor.
"""
