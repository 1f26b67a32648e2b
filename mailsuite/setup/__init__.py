"""`mailsuite setup`: a production installation from one command (system user, config,
folders, systemd unit, DKIM keys, the first account), idempotent."""
