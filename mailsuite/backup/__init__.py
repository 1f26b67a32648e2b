"""Backups of a running server's data folder (`mailsuite backup`) and their restore onto an
empty one (`mailsuite restore`)."""
