"""An account's Sieve scripts on disk: any number of named scripts, one of them active.

Layout of the account's sieve folder (`account_folder`, inside its Maildir so that the scripts
go wherever the mailbox goes, and Maildir tools, which look only at dot folders, ignore it):
    index.json       {"active": name | null, "scripts": {name: file name}}
    s-<n>-<hint>.sieve   one file per script version (the hint: the name's safe characters)
    status.json      the last run-time error, for the user and the admin
    vacation/, duplicate/   run-time state (see `state.py`)
Every change writes a new file and then the index, each durably (tmp, fsync, rename, fsync
the folder) and under `lock` (flock), so ManageSieve, the admin command and a delivery never
see half a change. Methods block: the server calls them through the durable-I/O service.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from mailsuite.durable import DurableIO, discard, replace_file
from mailsuite.durable.modes import make_private_dirs, private_opener
from mailsuite.sieve.grammar import SieveError
from mailsuite.sieve.script import Script, parse

__all__ = [
    "ActiveScriptError",
    "BadNameError",
    "ParsedScripts",
    "QuotaError",
    "ScriptStore",
    "SieveError",
    "account_folder",
    "check_name",
    "forget_stamps",
    "index_stamp",
]

INDEX = "index.json"
STATUS = "status.json"
# RFC 5804 §1.6: script names are at most 1024 octets (we take that as our limit too).
MAX_NAME_OCTETS = 1024
_NOT_TAKEN = object()  # ScriptStore.active's stamp when the caller has none
# How long (seconds) an account's index stamp is believed before it is taken again.  A stat per
# delivery let go of the GIL in the durable pool, which under load cost that thread and the
# reactor several futex rounds for each message; a change this process makes (ManageSieve, a
# script stored by the server) forgets every stamp at once, another process's change (the
# admin command) shows at the first delivery this long after it.
RECHECK_AFTER = 0.1
MAX_STAMPS = 4096  # accounts whose stamps are held; past it they are all taken again
# Index path -> (monotonic time until which it is believed, its stamp or None).
_stamps: dict[str, tuple[float, tuple | None]] = {}
_forgotten = [0]  # how many times they were forgotten: a stat taken before is not kept


class QuotaError(Exception):
    """RFC 5804 QUOTA/MAXSCRIPTS or QUOTA/MAXSIZE: `.code` is "MAXSCRIPTS" or "MAXSIZE"."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class ActiveScriptError(Exception):
    """RFC 5804 §2.10: the active script cannot be deleted."""


class BadNameError(ValueError):
    """A script name RFC 5804 §1.6 does not allow."""


def account_folder(maildir: Path) -> Path:
    """The sieve folder of the account whose Maildir is `maildir`
    (`Store.path_for(address)`)."""
    return Path(maildir) / "sieve"


def check_name(name: str) -> None:
    """RFC 5804 §1.6: not empty, no control characters (Cc), no U+2028/2029, in UTF-8 at most
    MAX_NAME_OCTETS octets."""
    if not name:
        raise BadNameError("empty script name")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_OCTETS:
        raise BadNameError("script name too long")
    for c in name:
        o = ord(c)
        if o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029) or 0xD800 <= o <= 0xDFFF:
            raise BadNameError("script name has a control character")


class ParsedScripts:
    """Compiled scripts by their text, shared by the accounts of a process: a script that many
    accounts use (a default the admin gave everybody) is parsed once, not once per account,
    and deliveries that find one not parsed yet wait for the one parse instead of each doing
    it.  Only scripts without include: what an include brings in depends on the account."""

    def __init__(self, size: int = 64):
        self.size = size
        self._scripts: OrderedDict[str, Script] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, text: str, parse_it: Callable[[], Script]) -> Script:
        """The compiled form of `text`, from parse_it() when not known (SieveError from it
        is raised and nothing is kept).  The caller must not change what it gets."""
        with self._lock:
            script = self._scripts.get(text)
            if script is not None:
                self._scripts.move_to_end(text)
                return script
            # Parsed under the lock: the same text arriving meanwhile waits for this parse.
            script = parse_it()
            if not script.included:
                self._scripts[text] = script
                if len(self._scripts) > self.size:
                    self._scripts.popitem(last=False)
            return script


class ScriptStore:
    def __init__(
        self,
        folder: Path,
        *,
        max_scripts: int = 20,
        max_size: int = 64 * 1024,
        global_folder: Path | None = None,
        io: DurableIO | None = None,
        parsed: ParsedScripts | None = None,
    ):
        self.folder = Path(folder)
        self.parsed = parsed  # shared with other accounts' stores
        self.max_scripts = max_scripts
        self.max_size = max_size
        self.global_folder = Path(global_folder) if global_folder else None
        self.io = io
        self._lock = threading.Lock()
        self._cached: tuple[tuple, Script | None] | None = None

    # -- reading ---------------------------------------------------------------------------

    def names(self) -> list[str]:
        return sorted(self._index()["scripts"])

    def active_name(self) -> str | None:
        return self._index()["active"]

    def get(self, name: str) -> str:
        index = self._index()
        file = index["scripts"].get(name)
        if file is None:
            raise KeyError(name)
        return self._read(file)

    def has_space(self, name: str, size: int) -> bool:
        """RFC 5804 §2.3 HAVESPACE: would a script of `size` octets under `name` fit."""
        try:
            self._check_quota(self._index(), name, size)
        except QuotaError:
            return False
        return True

    # -- changing --------------------------------------------------------------------------

    def put(self, name: str, text: str) -> Script:
        """Check and store a script (replacing one of that name): SieveError, QuotaError,
        BadNameError."""
        check_name(name)
        data = text.encode("utf-8")
        script = parse(text)
        with self._locked():
            index = self._index()
            self._check_quota(index, name, len(data))
            old = index["scripts"].get(name)
            file = self._write_script(data, name)
            index["scripts"][name] = file
            self._write_index(index)
            if old is not None:
                discard(self.folder / old)
            if index["active"] == name:
                self.set_status(name, None)  # the error was the old version's
        return script

    def delete(self, name: str) -> None:
        with self._locked():
            index = self._index()
            if name not in index["scripts"]:
                raise KeyError(name)
            if index["active"] == name:
                raise ActiveScriptError(name)
            file = index["scripts"].pop(name)
            self._write_index(index)
            discard(self.folder / file)

    def rename(self, old: str, new: str) -> None:
        """KeyError when `old` is missing, FileExistsError when `new` exists."""
        check_name(new)
        with self._locked():
            index = self._index()
            if old not in index["scripts"]:
                raise KeyError(old)
            if new in index["scripts"]:
                raise FileExistsError(new)
            index["scripts"][new] = index["scripts"].pop(old)
            if index["active"] == old:
                index["active"] = new
            self._write_index(index)

    def activate(self, name: str | None) -> None:
        """Make `name` the active script (None: no script runs); KeyError when missing."""
        with self._locked():
            index = self._index()
            if name is not None and name not in index["scripts"]:
                raise KeyError(name)
            index["active"] = name
            self._write_index(index)
            self.set_status(name or "", None)

    # -- delivery --------------------------------------------------------------------------

    def active(self, stamp: tuple | None | object = _NOT_TAKEN) -> Script | None:
        """The active script compiled, with its includes; cached while the index and the
        included files keep their size and time, so a delivery does not parse again.
        SieveError when it (or an include) no longer parses.  `stamp`: the account's
        `index_stamp`, when the caller has just taken it (a delivery: one stat, not two)."""
        index_stamp = _stamp(self.folder / INDEX) if stamp is _NOT_TAKEN else stamp
        with self._lock:
            cached = self._cached
        if cached is not None and cached[0][0] == index_stamp:
            if all(_stamp(path) == stamp for path, stamp in cached[0][1]):
                return cached[1]
        index = self._index()
        name = index["active"]
        script = None
        used: list[Path] = []
        if name is not None:
            text = self._read(index["scripts"][name])
            resolver = self._resolver(used)
            if self.parsed is None:
                script = parse(text, includes=resolver)
            else:
                script = self.parsed.get(text, lambda: parse(text, includes=resolver))
            script = replace(script, name=name)
        key = (index_stamp, tuple((path, _stamp(path)) for path in used))
        with self._lock:
            self._cached = (key, script)
        return script

    def _resolver(self, used: list[Path]):
        def resolve(location: str, name: str) -> str | None:
            try:
                check_name(name)
            except BadNameError:
                return None
            if location == "global":
                if self.global_folder is None:
                    return None
                path = self.global_folder / f"{name}.sieve"
                if "/" in name or name.startswith("."):
                    return None
            else:
                file = self._index()["scripts"].get(name)
                if file is None:
                    return None
                path = self.folder / file
            used.append(path)
            try:
                return path.read_bytes().decode("utf-8", "replace")
            except OSError:
                return None

        return resolve

    def status(self) -> dict | None:
        """The last run-time error: {"time", "script", "error"}, or None."""
        try:
            return json.loads((self.folder / STATUS).read_text("utf-8"))
        except (OSError, ValueError):
            return None

    def set_status(self, script: str, error: str | None) -> None:
        """Record (or, with None, clear) the run-time error users and admins read."""
        path = self.folder / STATUS
        if error is None:
            if path.exists():
                discard(path)
            return
        record = {"time": int(time.time()), "script": script, "error": error}
        make_private_dirs(self.folder)
        self._write(path, json.dumps(record).encode(), replacing=True)

    # -- files -----------------------------------------------------------------------------

    def _index(self) -> dict:
        try:
            raw = (self.folder / INDEX).read_bytes()
        except FileNotFoundError:
            return {"active": None, "scripts": {}}
        try:
            index = json.loads(raw)
            scripts = {str(k): str(v) for k, v in dict(index.get("scripts", {})).items()}
            active = index.get("active")
        except (ValueError, TypeError, AttributeError):
            return {"active": None, "scripts": {}}
        return {"active": active if active in scripts else None, "scripts": scripts}

    def _check_quota(self, index: dict, name: str, size: int) -> None:
        if size > self.max_size:
            raise QuotaError("MAXSIZE", f"script larger than {self.max_size} octets")
        if name not in index["scripts"] and len(index["scripts"]) >= self.max_scripts:
            raise QuotaError("MAXSCRIPTS", f"at most {self.max_scripts} scripts")

    def _read(self, file: str) -> str:
        return (self.folder / file).read_bytes().decode("utf-8", "replace")

    def _write_script(self, data: bytes, name: str) -> str:
        hint = re.sub(r"[^A-Za-z0-9_-]", "_", name)[:40]
        file = f"s-{time.time_ns():x}-{os.getpid()}-{threading.get_ident() % 65536:x}-{hint}.sieve"
        self._write(self.folder / file, data)
        return file

    def _write_index(self, index: dict) -> None:
        data = json.dumps(index, ensure_ascii=False, sort_keys=True).encode("utf-8")
        try:
            self._write(self.folder / INDEX, data, replacing=True)
        finally:
            forget_stamps()

    def _write(self, final: Path, data: bytes, replacing: bool = False) -> None:
        if self.io is None:
            replace_file(final, data)
            return
        tmp = final.with_name(f".tmp-{os.getpid()}-{threading.get_ident()}-{final.name}")
        discard(tmp)  # one a crash left behind under this name
        self.io.write_file(tmp, data, final, replacing=replacing)

    @contextmanager
    def _locked(self):
        make_private_dirs(self.folder)
        with self._lock, open(self.folder / "lock", "a", opener=private_opener) as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)


def index_stamp(maildir: Path) -> tuple | None:
    """What tells whether the scripts of the account whose Maildir is `maildir` changed (its
    index's time, size and inode), None when it has no index: no script was ever stored.
    Taken from the disk at most every RECHECK_AFTER seconds per account (see there).  The
    path by string (account_folder's join, in pathlib, cost more than the stat)."""
    path = f"{maildir}/sieve/{INDEX}"
    now = time.monotonic()
    held = _stamps.get(path)
    if held is not None and now < held[0]:
        return held[1]
    generation = _forgotten[0]
    stamp = _stamp(path)
    if len(_stamps) >= MAX_STAMPS:
        _stamps.clear()
    if generation == _forgotten[0]:
        _stamps[path] = (now + RECHECK_AFTER, stamp)
    return stamp


def forget_stamps() -> None:
    """Take every index stamp from the disk again: this process changed a script (also for
    code that writes an account's sieve folder itself, as a restore does)."""
    _forgotten[0] += 1
    _stamps.clear()


def _stamp(path: Path | str) -> tuple | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)
