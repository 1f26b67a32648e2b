"""Bringing mail in (mbox, Maildir, IMAP) and taking it out (Maildir, mbox), through the store."""
