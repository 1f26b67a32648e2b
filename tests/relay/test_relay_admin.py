"""`mailsuite queue list|show|flush|retry|delete|bounce`, alone and against a running runner."""

import time

import pytest

from mailsuite.cli import main
from mailsuite.spool.queue import FAILED, Queue
from tests.relay.relay_support import Sender, relay_config, wait_for

MSG = b"From: sender@example.test\r\nSubject: queued\r\n\r\nbody text\r\n"


def write_config(tmp_path):
    path = tmp_path / "mailsuite.toml"
    path.write_text(f'hostname = "mail.example.test"\ndata_dir = "{tmp_path / "data"}"\n')
    return str(path)


def run(capsys, conf, *args):
    code = main(["--config", conf, "queue", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_show_delete_without_server(tmp_path, capsys):
    conf = write_config(tmp_path)
    q = Queue(tmp_path / "data" / "queue")
    qid = q.enqueue("sender@example.test", ["a@remote.test", "b@remote.test"], MSG, "HDRS")
    code, out, _ = run(capsys, conf, "list")
    assert code == 0
    assert qid in out and "sender@example.test -> a@remote.test, b@remote.test" in out
    assert "1 message(s)" in out
    code, out, _ = run(capsys, conf, "show", qid)
    assert code == 0 and "Subject: queued" in out and "body text" not in out
    assert "<a@remote.test> pending" in out and "ret=HDRS" in out
    code, out, _ = run(capsys, conf, "show", "--body", qid)
    assert "body text" in out
    code, _, err = run(capsys, conf, "delete", qid, "NOSUCH1")
    assert code == 67 and "no such entry: NOSUCH1" in err  # EX_NOUSER
    assert q.ids() == []
    code, out, _ = run(capsys, conf, "list")
    assert "queue is empty" in out


def test_bounce_marks_pending_failed_and_retry_makes_due(tmp_path, capsys):
    conf = write_config(tmp_path)
    q = Queue(tmp_path / "data" / "queue")
    qid = q.enqueue("s@x.test", ["a@remote.test"], MSG, next_attempt=time.time() + 3600)
    assert run(capsys, conf, "retry", qid)[0] == 0
    assert q.load(qid).next_attempt == 0
    assert run(capsys, conf, "bounce", qid)[0] == 0
    r = q.load(qid).recipients[0]
    assert r.state == FAILED and r.status == "5.0.0" and not r.dsn_sent
    assert q.take_trigger()


@pytest.fixture
def server(tmp_path, sink):
    cfg = relay_config(
        tmp_path / "data", routes={"remote.test": f"127.0.0.1:{sink.port}"}, retry_schedule=[3600]
    )
    s = Sender(cfg)
    s.start()
    yield s
    s.stop()


def test_flush_reaches_running_server(tmp_path, capsys, server, sink):
    sink.script.data_end = ["451 4.3.0 later", "250 2.0.0 ok"]
    conf = write_config(tmp_path)
    server.submit("sender@example.test", ["a@remote.test"], MSG)
    wait_for(lambda: sink.data_count == 1 and not server.runner.active)
    assert server.queue_ids()
    code, out, _ = run(capsys, conf, "flush")
    assert code == 0 and "1 queued message(s)" in out
    server.wait_empty(timeout=5)
    assert len(sink.transactions) == 1


def test_bounce_on_running_server_sends_dsn(tmp_path, capsys, server, sink):
    sink.script.data_end = ["451 4.3.0 later"]
    conf = write_config(tmp_path)
    qid = server.submit("sender@example.test", ["a@remote.test"], MSG)
    wait_for(lambda: sink.data_count == 1 and not server.runner.active)
    assert run(capsys, conf, "bounce", qid)[0] == 0
    server.wait_empty(timeout=5)
    (raw,) = wait_for(server.mailbox)
    assert b"Status: 5.0.0" in raw and b"cancelled by the mail administrator" in raw


def test_delete_on_running_server_forgets_entry(tmp_path, capsys, server, sink):
    sink.script.data_end = ["451 4.3.0 later"]
    conf = write_config(tmp_path)
    qid = server.submit("sender@example.test", ["a@remote.test"], MSG)
    wait_for(lambda: sink.data_count == 1 and not server.runner.active)
    assert run(capsys, conf, "delete", qid)[0] == 0
    wait_for(lambda: qid not in server.runner.entries, timeout=5)
    assert run(capsys, conf, "flush")[0] == 0
    time.sleep(0.3)
    assert sink.data_count == 1 and server.mailbox() == []
