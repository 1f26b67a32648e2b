"""SMTP front end: inbound MX (25), submission (587 STARTTLS) and submissions (465 TLS)."""
