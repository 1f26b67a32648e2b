"""POP3 front end (RFC 1939, 2449, 2595): pop3 (110, STLS) and pop3s (995, TLS) over the INBOX."""
