"""Sieve (RFC 5228 and extensions): scripts parsed and checked, stored per account, run at
delivery as a pure function of the message."""

from mailsuite.sieve.commands import EXTENSIONS
from mailsuite.sieve.grammar import SieveError
from mailsuite.sieve.script import Script, parse

__all__ = ["EXTENSIONS", "Script", "SieveError", "parse"]
