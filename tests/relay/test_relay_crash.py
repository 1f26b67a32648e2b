"""kill -9 of a sending `mailsuite serve` in the middle of deliveries, or while clients are
submitting, then a restart: every message queued (acknowledged) reaches the receiver at least
once and the spool ends empty."""

import os
import signal
import smtplib
import socket
import subprocess
import sys
import threading

from mailsuite.accounts.db import Accounts
from mailsuite.spool.queue import Queue
from tests.conftest import LISTEN_KINDS
from tests.relay.relay_support import wait_for

MSG = b"From: sender@example.test\r\nSubject: crash test %d\r\n\r\n" + b"line\r\n" * 2000


def write_config(tmp_path, port: int, submission: int | None = None) -> str:
    listen = "\n".join(f"{k} = []" for k in LISTEN_KINDS)
    if submission is not None:
        listen = listen.replace("submission = []", f'submission = ["127.0.0.1:{submission}"]')
    text = f"""hostname = "mail.example.test"
domains = ["example.test"]
allow_root = true
data_dir = "{tmp_path / "data"}"
[listen]
{listen}
[auth]
plaintext = "loopback"
[log]
file = "{tmp_path / "server.log"}"
[relay]
scan_interval = 0.1
retry_schedule = [1]
command_timeout = 5
data_timeout = 5
connections_per_destination = 4
routes = {{ "remote.test" = "127.0.0.1:{port}" }}
"""
    path = tmp_path / "mailsuite.toml"
    path.write_text(text)
    return str(path)


def serve(conf: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mailsuite.cli", "--config", conf, "serve"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def restart_until_drained(conf: str, queue: Queue) -> None:
    proc = serve(conf)
    try:
        wait_for(lambda: not queue.ids(), timeout=30)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_kill_9_during_delivery_then_restart_loses_nothing(tmp_path, sink):
    # Slow final replies keep several transactions in flight when the kill comes.
    sink.script.slow["DATA-END"] = 0.4
    conf = write_config(tmp_path, sink.port)
    queue = Queue(tmp_path / "data" / "queue")
    n = 30
    for i in range(n):
        queue.enqueue("sender@example.test", [f"r{i}@remote.test"], MSG.replace(b"%d", b"%d" % i))
    proc = serve(conf)
    try:
        wait_for(lambda: sink.data_count >= 3, timeout=20)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    delivered_before = {a for t in sink.transactions for a in t.accepted}
    assert len(delivered_before) < n, "the kill came too late to test anything"
    # Everything not confirmed delivered is still queued.
    remaining = {r.address for e in queue.entries() for r in e.recipients}
    assert remaining | delivered_before == {f"r{i}@remote.test" for i in range(n)}
    sink.script.slow.clear()
    restart_until_drained(conf, queue)
    delivered = {a for t in sink.transactions for a in t.accepted}
    assert delivered == {f"r{i}@remote.test" for i in range(n)}
    # Message contents intact (each subject once at least).
    subjects = {t.data.split(b"\r\n")[1] for t in sink.transactions}
    assert len(subjects) == n
    for sub in ("entries", "env", "tmp"):
        assert os.listdir(tmp_path / "data" / "queue" / sub) == []


def test_kill_9_while_clients_submit_loses_no_acknowledged_message(tmp_path, sink):
    # RFC 5321 §6.1: once the server has said 250 after the data, the message is its to
    # deliver. The kill comes while four clients are in the middle of submissions (some with
    # their spool file being written), and slow final replies keep entries in the queue.
    sink.script.slow["DATA-END"] = 0.2
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    conf = write_config(tmp_path, sink.port, submission=port)
    (tmp_path / "data").mkdir()
    Accounts(tmp_path / "data" / "accounts.sqlite", ["example.test"]).add_user(
        "sender@example.test", "secret pass"
    )
    proc = serve(conf)
    acknowledged: set[str] = set()
    killed = threading.Event()

    def client(k: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=20) as c:
                c.login("sender@example.test", "secret pass")
                for i in range(10_000):
                    rcpt = f"c{k}m{i}@remote.test"
                    c.sendmail("sender@example.test", [rcpt], MSG.replace(b"%d", rcpt.encode()))
                    acknowledged.add(rcpt)
        except (smtplib.SMTPException, OSError):
            assert killed.is_set()  # only the kill ends a client

    try:
        wait_for(lambda: _listening(port), timeout=20)
        clients = [threading.Thread(target=client, args=(k,)) for k in range(4)]
        for t in clients:
            t.start()
        wait_for(lambda: len(acknowledged) >= 40, timeout=30)
        killed.set()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for t in clients:
            t.join(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    queue = Queue(tmp_path / "data" / "queue")
    assert queue.ids(), "the kill came too late to test anything"
    sink.script.slow.clear()
    restart_until_drained(conf, queue)
    delivered = {a for t in sink.transactions for a in t.accepted}
    assert acknowledged <= delivered
    for t in sink.transactions:  # each message whole, and the one sent to its recipient
        head, _, body = t.data.partition(b"\r\n\r\n")
        assert b"\r\nSubject: crash test %s\r\n" % t.accepted[0].encode() in head
        assert body == b"line\r\n" * 2000
    assert not (tmp_path / "data" / "queue" / "corrupt").exists()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def test_sigusr1_makes_running_server_reread_queue(tmp_path, sink):
    conf = write_config(tmp_path, sink.port)
    text = open(conf).read().replace("scan_interval = 0.1", "scan_interval = 1.0")
    open(conf, "w").write(text)
    proc = serve(conf)
    try:
        queue = Queue(tmp_path / "data" / "queue")
        wait_for(
            lambda: (
                (tmp_path / "server.log").exists()
                and b"queue runner started" in (tmp_path / "server.log").read_bytes()
            ),
            timeout=20,
        )
        # Written by another process: without a signal the server would see it only at its
        # periodic re-scan (30 scan intervals = 30 s here).
        queue.enqueue("sender@example.test", ["late@remote.test"], MSG.replace(b"%d", b"x"))
        os.kill(proc.pid, signal.SIGUSR1)
        wait_for(lambda: not queue.ids(), timeout=5)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert sink.transactions[0].accepted == ["late@remote.test"]
