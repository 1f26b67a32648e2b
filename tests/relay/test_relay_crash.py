"""kill -9 of a sending `mailsuite serve` in the middle of deliveries, then a restart: every
queued message reaches the receiver at least once and the spool ends empty."""

import os
import signal
import subprocess
import sys

from mailsuite.relay.queue import Queue
from tests.relay.relay_support import wait_for

MSG = b"From: sender@example.test\r\nSubject: crash test %d\r\n\r\n" + b"line\r\n" * 2000


def write_config(tmp_path, port: int) -> str:
    listen = "\n".join(
        f"{k} = []"
        for k in ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http")
    )
    text = f"""hostname = "mail.example.test"
domains = ["example.test"]
data_dir = "{tmp_path / "data"}"
[listen]
{listen}
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
    delivered = {a for t in sink.transactions for a in t.accepted}
    assert delivered == {f"r{i}@remote.test" for i in range(n)}
    # Message contents intact (each subject once at least).
    subjects = {t.data.split(b"\r\n")[1] for t in sink.transactions}
    assert len(subjects) == n
    for sub in ("entries", "env", "tmp"):
        assert os.listdir(tmp_path / "data" / "queue" / sub) == []


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
