"""ManageSieve (RFC 5804): users upload, check and choose their Sieve scripts on port 4190.

`parser.py` and `response.py` are the wire syntax, `session.py` the state machine with its
command table (`auth.py`, `script_commands.py` hold the commands), `server.py` the Twisted
adapter, `admin.py` the `mailsuite sieve` admin commands on the same store.
"""
