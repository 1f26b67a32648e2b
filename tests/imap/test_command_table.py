"""The command table: it names every command the server has, each command runs only in the
states it lists (RFC 3501 §3, §6), the capabilities it names are advertised, and the IMAP
package finds its modules by ordinary imports only."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import pytest

import mailsuite.imap
from mailsuite.imap import commands
from mailsuite.imap.commands.table import ADVERTISED, COMMANDS, CONDITIONAL
from mailsuite.imap.parser import parse_line
from mailsuite.imap.states import ANY, AUTHENTICATED, NOT_AUTHENTICATED, SELECTED
from tests.imap.session_machine import USER, make_services, open_session

EVERY_COMMAND = {
    # RFC 3501
    "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "LOGIN", "AUTHENTICATE",
    "SELECT", "EXAMINE", "CREATE", "DELETE", "RENAME", "SUBSCRIBE", "UNSUBSCRIBE", "LIST",
    "LSUB", "STATUS", "APPEND", "CHECK", "CLOSE", "EXPUNGE", "SEARCH", "FETCH", "STORE",
    "COPY", "UID SEARCH", "UID FETCH", "UID STORE", "UID COPY",
    # extensions
    "ID", "NAMESPACE", "ENABLE", "IDLE", "GETQUOTAROOT", "GETQUOTA", "SETQUOTA", "COMPRESS",
    "UNSELECT", "UID EXPUNGE", "MOVE", "UID MOVE", "SORT", "UID SORT", "THREAD", "UID THREAD",
    "REPLACE", "UID REPLACE", "GENURLAUTH", "RESETKEY", "URLFETCH", "NOTIFY", "CANCELUPDATE",
}  # fmt: skip


def test_table_names_every_command():
    assert set(COMMANDS) == EVERY_COMMAND
    for name, spec in COMMANDS.items():
        assert spec.name == name
        assert spec.states and spec.states <= ANY


def test_every_handler_in_the_commands_package_is_in_the_table():
    """A handler written but missing from the table would never run: nothing registers
    itself."""
    handlers = {spec.handler for spec in COMMANDS.values()}
    missing = []
    for info in pkgutil.iter_modules(commands.__path__):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        for name, fn in vars(module).items():
            if not inspect.isfunction(fn) or fn.__module__ != module.__name__:
                continue
            if name.startswith("_") or list(inspect.signature(fn).parameters) != ["session", "cmd"]:
                continue
            if fn not in handlers:
                missing.append(f"{module.__name__}.{name}")
    assert missing == []


def test_fetch_store_search_copy_hold_back_expunge_rfc3501_7_4_1():
    held = {name for name, spec in COMMANDS.items() if not spec.expunge_ok}
    assert held == {"FETCH", "STORE", "SEARCH", "COPY", "SORT", "THREAD"}


def test_capabilities_of_the_table_are_advertised():
    for spec in COMMANDS.values():
        if spec.capability is not None:
            assert spec.capability in ADVERTISED + CONDITIONAL, spec.name
    assert ADVERTISED[0] == "IMAP4rev1"
    assert len(set(ADVERTISED)) == len(ADVERTISED)


@pytest.fixture(scope="module")
def services(tmp_path_factory):
    return make_services(tmp_path_factory.mktemp("table"), with_tls=False)


def _session_in(services, state: str):
    session, conn = open_session(services)
    if state != NOT_AUTHENTICATED:
        session.logged_in(USER)
    if state == SELECTED:
        session.receive(b"s SELECT INBOX\r\n")
        assert conn.take()[-1] == b"s OK [READ-WRITE] SELECT completed"
    assert session.state == state
    return session, conn


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_command_outside_its_states_is_bad(services, name):
    spec = COMMANDS[name]
    for state in sorted((NOT_AUTHENTICATED, AUTHENTICATED, SELECTED)):
        if state in spec.states:
            continue
        session, conn = _session_in(services, state)
        session.run(parse_line(f"t1 {name}".encode()))
        assert conn.take() == [f"t1 BAD {name} not allowed in the {state} state".encode()]
        assert session.state == state
        assert not conn.closed


@pytest.mark.parametrize("name", ["NOOP", "CAPABILITY", "NAMESPACE", "CHECK", "UNSELECT"])
def test_command_inside_its_states_runs(services, name):
    for state in sorted(COMMANDS[name].states):
        session, conn = _session_in(services, state)
        session.run(parse_line(f"t1 {name}".encode()))
        assert conn.take()[-1] == f"t1 OK {name} completed".encode()


def test_unknown_command_is_bad(services):
    session, conn = _session_in(services, NOT_AUTHENTICATED)
    session.run(parse_line(b"t1 XYZZY"))
    assert conn.take() == [b"t1 BAD Unknown command XYZZY"]


# Modules of the IMAP front end are found by `import`, never by name at run time.
BY_NAME = {"import_module", "find_spec", "__import__", "reload", "spec_from_file_location"}


def _imap_sources():
    root = Path(mailsuite.imap.__file__).parent
    return sorted(root.rglob("*.py"))


def test_no_imap_module_imports_by_name():
    offenders = []
    for path in _imap_sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names if a.name.startswith("importlib")]
                bad = [n for n in names if n != "importlib.metadata"]
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("importlib"):
                # importlib.metadata reads the installed version; it loads no module.
                bad = [
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if node.module != "importlib.metadata" and a.name != "metadata"
                ]
            elif isinstance(node, ast.Name | ast.Attribute):
                name = node.id if isinstance(node, ast.Name) else node.attr
                bad = [name] if name in BY_NAME else []
            else:
                bad = []
            offenders += [f"{path.name}:{node.lineno}: {b}" for b in bad]
    assert offenders == []


STATE_MACHINE_AND_COMMANDS = ("session.py", "server.py", "view.py", "server_state.py", "states.py")


def test_state_machine_and_commands_import_at_module_top():
    """No import inside a function in the session, its adapter and the commands: each
    module's dependencies are all in its first lines (and checked by import-linter)."""
    offenders = []
    for path in _imap_sources():
        if path.parent.name != "commands" and path.name not in STATE_MACHINE_AND_COMMANDS:
            continue
        tree = ast.parse(path.read_text(), str(path))
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_docs_imap_table_names_every_advertised_capability():
    """docs/imap.md's table is where users look: every capability in it, none missing."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "imap.md").read_text()
    names = [c.split("=")[0] + "=" if c.startswith("APPENDLIMIT") else c for c in ADVERTISED]
    missing = [c for c in names if c != "IMAP4rev1" and f"`{c}" not in text]
    missing += [c for c in CONDITIONAL if f"`{c}`" not in text]
    assert not missing, missing
