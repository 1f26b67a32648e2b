"""The commands on the user's scripts (RFC 5804 §2.5-§2.12): HAVESPACE, PUTSCRIPT,
CHECKSCRIPT, LISTSCRIPTS, SETACTIVE, GETSCRIPT, DELETESCRIPT and RENAMESCRIPT.

A mixin of `ManageSieveSession`.  Every handler checks its arguments on the reactor, then hands
the store work (which reads, writes and fsyncs files, and compiles scripts) to the durable-I/O
service in one job, and turns the result or the store's exception into the response.
"""

from __future__ import annotations

import unicodedata

from twisted.internet import defer
from twisted.logger import Logger

from mailsuite.logtext import visible
from mailsuite.managesieve import response as R
from mailsuite.managesieve.parser import Atom
from mailsuite.managesieve.response import SieveNo
from mailsuite.managesieve.store import (
    ActiveScriptError,
    BadNameError,
    QuotaError,
    ScriptExists,
    SieveError,
    check_name,
    check_script,
)

log = Logger(namespace="mailsuite.managesieve")


def script_name(value, *, empty_ok: bool = False) -> str:
    """A script name argument (RFC 5804 §1.6): UTF-8 without control characters, compared in
    Net-Unicode form (NFC)."""
    if isinstance(value, Atom):
        text = value.text
    else:
        try:
            text = value.decode("utf-8")
        except UnicodeDecodeError:
            raise SieveNo("The script name is not UTF-8.", bad=True) from None
    if not text and empty_ok:
        return text
    text = unicodedata.normalize("NFC", text)
    try:
        check_name(text)
    except BadNameError as e:
        raise SieveNo(f"Invalid script name: {e}.", bad=True) from None
    return text


def script_text(value) -> str:
    """A script argument: RFC 5228 §2.1 scripts are UTF-8."""
    if isinstance(value, Atom):
        raise SieveNo("The script must be a string.", bad=True)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise SieveNo("The script is not UTF-8.") from None


def _count(args, n: int, usage: str) -> None:
    if len(args) != n:
        raise SieveNo(f"Usage: {usage}.", bad=True)


class ScriptCommands:
    """The authenticated-state script commands, for `ManageSieveSession`."""

    def _in_store(self, work, *args) -> defer.Deferred:
        """Run `work(scripts, *args)` in the durable-I/O service; the store's own errors come
        back as NO responses."""
        d = self.services.store.io.submit(work, self.scripts, *args)
        return d.addErrback(self._store_failure)

    def _store_failure(self, failure):
        if failure.check(SieveError):
            # RFC 5804 §2.6: the reason a script is invalid, "line N: message", for the user.
            raise SieveNo(str(failure.value))
        if failure.check(QuotaError):
            raise SieveNo(str(failure.value) or "Quota exceeded.", _quota_code(failure.value))
        if failure.check(ActiveScriptError):
            raise SieveNo("The active script cannot be deleted.", R.ACTIVE)
        if failure.check(ScriptExists):
            raise SieveNo("A script of that name exists.", R.ALREADYEXISTS)
        if failure.check(BadNameError):
            raise SieveNo(f"Invalid script name: {failure.value}.", bad=True)
        if failure.check(KeyError):
            raise SieveNo("No such script.", R.NONEXISTENT)
        return failure

    def _note(self, what: str, name: str) -> None:
        log.info(
            "managesieve #{sid} {addr} {what} {name}",
            sid=self.session_id,
            addr=visible(self.address),
            what=what,
            name=visible(name),
        )

    def _havespace(self, args):
        _count(args, 2, "HAVESPACE name size")
        name = script_name(args[0])
        size = args[1]
        if not (isinstance(size, Atom) and size.text.isdigit() and len(size.text) <= 10):
            raise SieveNo("The size must be a number.", bad=True)
        octets = int(size.text)
        if octets > self.scripts.max_size:
            # RFC 5804 §2.5: too big whatever else the account holds.
            raise SieveNo(
                f"Scripts are limited to {self.scripts.max_size} octets.", R.QUOTA_MAXSIZE
            )

        def answered(room: bool) -> None:
            if not room:
                raise SieveNo(f"At most {self.scripts.max_scripts} scripts.", R.QUOTA_MAXSCRIPTS)
            self._write([R.ok("Putscript would succeed.")])

        return self._in_store(_has_space, name, octets).addCallback(answered)

    def _putscript(self, args):
        _count(args, 2, "PUTSCRIPT name script")
        name = script_name(args[0])
        text = script_text(args[1])

        def stored(_) -> None:
            self._note("stored script", name)
            self._write([R.ok("Script stored.")])

        return self._in_store(_put, name, text).addCallback(stored)

    def _checkscript(self, args):
        _count(args, 1, "CHECKSCRIPT script")
        text = script_text(args[0])
        d = self.services.store.io.submit(check_script, text)
        d.addErrback(self._store_failure)
        return d.addCallback(lambda _: self._write([R.ok("Script is valid.")]))

    def _listscripts(self, args):
        if args:
            raise SieveNo("LISTSCRIPTS takes no arguments.", bad=True)

        def listed(result) -> None:
            names, active = result
            lines = []
            for name in names:
                # RFC 5804 §2.7: the active script is marked ACTIVE.
                suffix = b" ACTIVE" if name == active else b""
                lines.append(R.string(name) + suffix + R.CRLF)
            self._write([*lines, R.ok("Listscripts completed.")])

        return self._in_store(_listing).addCallback(listed)

    def _setactive(self, args):
        _count(args, 1, "SETACTIVE name")
        # RFC 5804 §2.8: the empty name makes no script active.
        name = script_name(args[0], empty_ok=True)

        def done(_) -> None:
            self._note("activated" if name else "deactivated scripts", name)
            self._write([R.ok("Active script set." if name else "No script is active.")])

        return self._in_store(_activate, name or None).addCallback(done)

    def _getscript(self, args):
        _count(args, 1, "GETSCRIPT name")
        name = script_name(args[0])

        def got(text: str) -> None:
            data = text.encode("utf-8")
            # RFC 5804 §2.9: the script is a literal, then CRLF, then OK.
            literal = b"{%d}\r\n" % len(data) + data + R.CRLF
            self._write([literal, R.ok("Getscript completed.")])

        return self._in_store(_get, name).addCallback(got)

    def _deletescript(self, args):
        _count(args, 1, "DELETESCRIPT name")
        name = script_name(args[0])

        def deleted(_) -> None:
            self._note("deleted script", name)
            self._write([R.ok("Script deleted.")])

        return self._in_store(_delete, name).addCallback(deleted)

    def _renamescript(self, args):
        _count(args, 2, "RENAMESCRIPT old new")
        old, new = script_name(args[0]), script_name(args[1])

        def renamed(_) -> None:
            self._note("renamed script " + visible(old) + " to", new)
            self._write([R.ok("Script renamed.")])

        return self._in_store(_rename, old, new).addCallback(renamed)


def _quota_code(error: QuotaError) -> str:
    """RFC 5804 §1.3: QUOTA/MAXSCRIPTS or QUOTA/MAXSIZE, as the store says which."""
    return {"MAXSIZE": R.QUOTA_MAXSIZE, "MAXSCRIPTS": R.QUOTA_MAXSCRIPTS}.get(error.code, R.QUOTA)


# The blocking halves, run in the durable-I/O service's threads.


def _has_space(scripts, name: str, size: int) -> bool:
    return scripts.has_space(name, size)


def _put(scripts, name: str, text: str) -> None:
    scripts.put(name, text)


def _listing(scripts) -> tuple[list[str], str | None]:
    return scripts.names(), scripts.active_name()


def _activate(scripts, name: str | None) -> None:
    scripts.activate(name)


def _get(scripts, name: str) -> str:
    return scripts.get(name)


def _delete(scripts, name: str) -> None:
    scripts.delete(name)


def _rename(scripts, old: str, new: str) -> None:
    scripts.rename(old, new)
