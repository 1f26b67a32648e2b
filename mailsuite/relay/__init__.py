"""Outbound relay: durable queue, MX routing, ESMTP client, DSN bounces, queue runner."""
