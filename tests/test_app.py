"""`mailsuite serve` as an operator runs it: a real process on free ports that logs one line per
event (JSON lines when configured), reloads its certificate on SIGHUP and stops cleanly with exit
status 0 on SIGTERM and SIGINT."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mailsuite.tls import fingerprint, make_self_signed
from tests.conftest import LISTEN_KINDS, base_config, client_tls_context, on_reactor, toml_dumps

LISTENING = re.compile(r"listening for (\w+) on 127\.0\.0\.1:(\d+)")


# `python -m mailsuite.cli`, with SIGINT as a terminal's Ctrl-C leaves it: a test suite run as a
# background job inherits SIGINT ignored, and a program keeps a signal ignored at its start (as
# Twisted does), so the server would not see the SIGINT these tests send.
AS_FROM_A_TERMINAL = (
    "import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "runpy.run_module('mailsuite.cli', run_name='__main__', alter_sys=True)"
)


class ServeProcess:
    """`mailsuite serve` in a child process, its output read line by line."""

    def __init__(self, root: Path, **overrides):
        root.mkdir(parents=True, exist_ok=True)
        self.config_path = root / "mailsuite.toml"
        self.raw = base_config(root, **overrides)
        self.config_path.write_text(toml_dumps(self.raw))
        self.proc = subprocess.Popen(
            # faulthandler: a server that does not stop is made to print every thread's stack
            [sys.executable, "-X", "faulthandler", "-c", AS_FROM_A_TERMINAL]
            + ["--config", str(self.config_path), "serve"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.ports: dict[str, int] = {}

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no {pattern!r} in output:\n" + "\n".join(self.seen))

    def wait_listening(self, parse=lambda line: line) -> None:
        while len(self.ports) < len(LISTEN_KINDS):
            line = parse(self.wait_for("listening for"))
            m = LISTENING.search(line)
            assert m, line
            self.ports[m.group(1)] = int(m.group(2))

    def stop(self, sig: int) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGABRT)  # faulthandler prints each thread's stack
            self.proc.wait()
            self.drain()
            raise AssertionError(
                f"still running 30 s after signal {sig}; its output:\n" + "\n".join(self.seen)
            ) from None
        finally:
            self.drain()

    def drain(self) -> None:
        while True:
            try:
                self.seen.append(self.lines.get(timeout=0.5))
            except queue.Empty:
                return

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def serve(tmp_path):
    started: list[ServeProcess] = []

    def start(name="serve", **overrides) -> ServeProcess:
        sp = ServeProcess(tmp_path / name, **overrides)
        started.append(sp)
        return sp

    yield start
    for sp in started:
        sp.kill()


def smtp_banner(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return s.recv(512)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_listens_then_stops_cleanly_with_exit_0(serve, sig):
    sp = serve()
    sp.wait_listening()
    assert set(sp.ports) == set(LISTEN_KINDS)
    assert smtp_banner(sp.ports["smtp"]).startswith(b"220 ")
    assert sp.stop(sig) == 0
    # Each event is one line, "<level> <namespace>: <text>"; the start-up summary, printed
    # once before the reactor runs, is the one block of other lines (ending with a blank one).
    first = next(i for i, line in enumerate(sp.seen) if line.startswith("mailsuite "))
    end = sp.seen.index("", first)
    summary = sp.seen[first:end]
    assert any(line.split()[:2] == ["smtp", f"127.0.0.1:{sp.ports['smtp']}"] for line in summary)
    for line in sp.seen[:first] + sp.seen[end + 1 :]:
        assert re.match(r"^(debug|info|warn|error|critical) [\w.]+: ", line), line
    # Twisted's own start/stop chatter is not there.
    assert not any("starting on" in line or "Closed)" in line for line in sp.seen)
    assert not any("Traceback" in line for line in sp.seen)
    # The listeners are closed.
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", sp.ports["smtp"]), timeout=2).close()


def test_serve_logs_json_lines_when_configured(serve):
    sp = serve(log={"format": "json"})
    sp.wait_listening(parse=lambda line: json.loads(line)["text"])
    assert sp.stop(signal.SIGTERM) == 0
    events = [json.loads(line) for line in sp.seen]  # every line is one JSON object
    assert all({"time", "level", "namespace", "text"} <= set(e) for e in events)
    assert any(e.get("kind") == "imaps" and e["level"] == "info" for e in events)


def test_sighup_reloads_the_certificate_for_new_connections(serve):
    sp = serve()
    sp.wait_listening()
    ctx = client_tls_context()

    def cert_of(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            with ctx.wrap_socket(raw) as tls:
                return tls.getpeercert(binary_form=True)

    before = cert_of(sp.ports["imaps"])
    cert, key = Path(sp.raw["tls"]["cert"]), Path(sp.raw["tls"]["key"])
    new_fp = make_self_signed(cert, key, "renewed.example.test")
    sp.proc.send_signal(signal.SIGHUP)
    sp.wait_for("TLS certificate loaded")
    after = cert_of(sp.ports["imaps"])
    assert after != before and fingerprint(after) == new_fp
    assert fingerprint(cert_of(sp.ports["pop3s"])) == new_fp
    assert sp.proc.poll() is None  # SIGHUP does not stop it
    assert sp.stop(signal.SIGTERM) == 0


def test_deliveries_by_the_admin_command_reach_the_running_server(serve):
    sp = serve(auth={"plaintext": "loopback"})
    sp.wait_listening()

    def cli(*args, data=None):
        return subprocess.run(
            [sys.executable, "-m", "mailsuite.cli", "--config", str(sp.config_path), *args],
            input=data,
            capture_output=True,
            timeout=60,
        )

    assert (
        cli(
            "user", "add", "carol@example.test", "--password-stdin", data=b"Pw-for-C-123\n"
        ).returncode
        == 0
    )
    msg = b"From: x@example.net\r\nSubject: hello carol\r\n\r\nhi\r\n"
    assert cli("deliver", "--to", "carol@example.test", data=msg).returncode == 0
    import imaplib

    imap = imaplib.IMAP4("127.0.0.1", sp.ports["imap"])
    imap.login("carol@example.test", "Pw-for-C-123")
    typ, data = imap.select("INBOX")
    assert typ == "OK" and data == [b"1"]
    typ, data = imap.fetch("1", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"hello carol" in data[0][1]
    imap.logout()
    assert sp.stop(signal.SIGTERM) == 0
    # The index of the folder the server had open was saved on the way out.
    maildir = Path(sp.raw["data_dir"]) / "mail" / "example.test" / "carol"
    assert (maildir / "mailsuite-index").exists()


def test_in_process_server_exposes_bound_ports_and_saves_indexes_on_stop(mail_server):
    srv = mail_server
    ports = {kind: srv.port(kind) for kind in LISTEN_KINDS}
    assert all(p > 0 for p in ports.values()) and len(set(ports.values())) == len(ports)
    with socket.create_connection(("127.0.0.1", ports["imaps"]), timeout=10) as raw:
        with client_tls_context().wrap_socket(raw) as tls:
            assert tls.recv(512).startswith(b"* OK")
    mbox = srv.mailbox("alice@example.test")
    folder = srv.call(mbox.folder, "INBOX")
    mbox.deliver(b"Subject: x\r\n\r\ny\r\n")
    srv.call(folder.refresh, True)
    srv.stop()
    assert (mbox.path / "mailsuite-index").exists()
    assert os.path.getsize(mbox.path / "mailsuite-index") > 0


def test_serve_exits_1_when_a_port_is_taken(serve):
    taken = socket.create_server(("127.0.0.1", 0))
    port = taken.getsockname()[1]
    try:
        sp = serve(listen={"smtp": [f"127.0.0.1:{port}"]})
        assert sp.proc.wait(timeout=30) == 1
        sp.drain()
        line = next(line for line in sp.seen if line.startswith("critical"))
        assert f"127.0.0.1:{port}" in line and "in use" in line
    finally:
        taken.close()


def test_log_text_matches_twisted_formatting():
    from twisted.logger import formatEvent

    from mailsuite.app import _event_text

    class Thing:
        size = 5

        def name(self):
            return "called"

    for event in [
        {"log_format": "a {b} {c!r} {t.size:>3}", "b": 1, "c": "q", "t": Thing()},
        {"log_format": "{t.name()}", "t": Thing()},
        {"log_format": "{missing}"},
        {"log_format": "x {{y}}"},
        {"message": ("legacy",), "log_format": None},
    ]:
        assert _event_text(event) == formatEvent(event)


def test_text_log_lines_are_dated_in_files_only():
    import io

    from twisted.logger import LogLevel

    from mailsuite.app import log_observer, log_stamp

    when = 1_795_000_000.25
    event = {
        "log_format": "queued {id}",
        "id": "ABC",
        "log_level": LogLevel.info,
        "log_namespace": "mailsuite.delivery",
        "log_time": when,
    }
    plain, dated = io.StringIO(), io.StringIO()
    log_observer("text", plain, stamped=False)(event)
    log_observer("text", dated, stamped=True)(event)
    assert plain.getvalue() == "info mailsuite.delivery: queued ABC\n"
    assert dated.getvalue() == f"{log_stamp(when)} info mailsuite.delivery: queued ABC\n"
    stamp = log_stamp(when)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.250[+-]\d{4}", stamp), stamp
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(when)) == stamp[:19]


def test_level_gate_passes_what_twisteds_level_filter_passes():
    from twisted.logger import FilteringLogObserver, LogLevel, LogLevelFilterPredicate

    from mailsuite.app import level_gate

    events = [
        {"log_level": lvl, "log_namespace": ns, "log_format": "x"}
        for lvl in LogLevel.iterconstants()
        for ns in ("mailsuite.smtp", "", None)
    ] + [{"log_namespace": "mailsuite.smtp", "log_format": "no level"}]
    for level in LogLevel.iterconstants():
        ours, theirs = [], []
        gate = level_gate(ours.append, level)
        reference = FilteringLogObserver(
            theirs.append, [LogLevelFilterPredicate(defaultLogLevel=level)]
        )
        for event in events:
            gate(dict(event))
            reference(dict(event))
        assert ours == theirs, level
        assert ours  # every level lets something through


def test_twisteds_legacy_chatter_is_dropped_and_its_errors_kept():
    """ "SessionFactory starting on 2525", "Starting factory <...>", a DNS query's "(UDP Port N
    Closed)": Twisted's legacy info lines go; a legacy error (log.err) still reaches the log."""
    from twisted.logger import LogLevel, formatEvent, globalLogPublisher
    from twisted.python import log as legacy

    from mailsuite.app import level_gate

    seen: list[dict] = []
    gate = level_gate(seen.append, LogLevel.debug)
    globalLogPublisher.addObserver(gate)
    try:
        legacy.msg("SessionFactory starting on 2525")
        legacy.msg("Starting factory <twisted.names.client.Resolver object at 0x7f00>")
        legacy.msg("(UDP Port 53124 Closed)")
        legacy.err(RuntimeError("a real problem"), "something broke")
    finally:
        globalLogPublisher.removeObserver(gate)
    texts = [formatEvent(e) for e in seen]
    assert not any("starting on" in t or "Starting factory" in t or "Closed" in t for t in texts)
    assert any("something broke" in t for t in texts)


def test_log_lines_the_reactor_writes_leave_once_per_turn_in_order(reactor_running):
    import io

    from mailsuite.app import LinesByTurn

    class Out(io.StringIO):
        writes = 0

        def write(self, text):
            self.writes += 1
            return super().write(text)

    out = Out()
    lines = on_reactor(LinesByTurn, out)

    def turn():
        lines.write("a\n")
        lines.write("b\n")
        return out.getvalue()

    assert on_reactor(turn) == ""  # held until the turn ends
    deadline = time.monotonic() + 10
    while not out.writes and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (out.getvalue(), out.writes) == ("a\nb\n", 1)

    def turn_with_another_thread():
        lines.write("c\n")
        other = threading.Thread(target=lines.write, args=("d\n",))
        other.start()
        other.join()
        # Another thread's line went out at once, after the line the reactor held.
        return out.getvalue()

    assert on_reactor(turn_with_another_thread) == "a\nb\nc\nd\n"
    time.sleep(0.1)
    assert (out.getvalue(), out.writes) == ("a\nb\nc\nd\n", 2)
    lines.write("e\n")  # not the reactor's thread: at once
    assert out.getvalue().endswith("d\ne\n")
