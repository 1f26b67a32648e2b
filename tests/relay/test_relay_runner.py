"""The queue runner end to end on loopback: retries, bounces (parsed back with `email`),
delay warnings, success notices, smarthost, concurrency, restart from disk."""

import email
import email.policy
import time

import pytest

from mailsuite.delivery import Recipient
from mailsuite.spool.queue import FAILED, PENDING, Queue
from tests.relay.relay_support import Sender, in_reactor, relay_config, wait_for

MSG = b"From: sender@example.test\r\nTo: a@remote.test\r\nSubject: test\r\n\r\nHello there.\r\n"


@pytest.fixture
def make_sender(tmp_path, sink):
    made = []

    def make(**relay):
        routes = {"remote.test": f"127.0.0.1:{sink.port}", "other.test": f"127.0.0.1:{sink.port}"}
        routes.update(relay.pop("routes", {}))
        s = Sender(relay_config(tmp_path / f"s{len(made)}", routes=routes, **relay))
        made.append(s)
        s.start()
        return s

    yield make
    for s in made:
        s.stop()


def parse_dsn(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert parts[0].get_content_type() == "text/plain"
    assert parts[1].get_content_type() == "message/delivery-status"
    # The stdlib parses delivery-status bodies as a list of header blocks.
    blocks = parts[1].get_payload()
    per_message, per_rcpt = blocks[0], blocks[1:]
    return msg, parts, per_message, per_rcpt


def test_delivers_and_removes_entry(make_sender, sink):
    s = make_sender()
    qid = s.submit("sender@example.test", ["a@remote.test", "b@remote.test"], MSG)
    assert qid
    s.wait_empty()
    (t,) = sink.transactions
    assert t.accepted == ["a@remote.test", "b@remote.test"]
    assert t.data == MSG
    assert s.mailbox() == []


def test_4xx_then_success_is_retried(make_sender, sink):
    sink.script.data_end = ["451 4.3.0 greylisted", "250 2.0.0 ok"]
    s = make_sender(retry_schedule=[1])
    s.submit("sender@example.test", ["a@remote.test"], MSG)
    wait_for(lambda: sink.data_count == 1)
    (qid,) = s.queue_ids()
    wait_for(lambda: s.services.queue.load(qid).attempts == 1)
    entry = s.services.queue.load(qid)
    assert entry.attempts == 1 and entry.recipients[0].state == PENDING
    assert entry.recipients[0].status == "4.3.0" and "greylisted" in entry.last_error
    assert entry.next_attempt > time.time()
    s.wait_empty()
    assert sink.data_count == 2 and len(sink.transactions) == 1
    assert s.mailbox() == []  # no bounce, no delay warning yet


def test_retry_is_tried_when_it_falls_due_not_at_the_next_scan(make_sender, sink):
    # The scan interval is far longer than the retry delay: only the due timer can start it.
    sink.script.data_end = ["451 4.3.0 greylisted", "250 2.0.0 ok"]
    s = make_sender(retry_schedule=[1], scan_interval=30.0)
    s.submit("sender@example.test", ["a@remote.test"], MSG)
    wait_for(lambda: sink.data_count == 1)
    (qid,) = s.queue_ids()
    wait_for(lambda: s.services.queue.load(qid).attempts == 1)
    due = s.services.queue.load(qid).next_attempt
    wait_for(lambda: sink.data_count == 2, timeout=5)
    tried = time.time()
    assert due <= tried < due + 1.0
    s.wait_empty()


def test_5xx_for_one_of_three_bounces_to_local_sender(make_sender, sink):
    sink.script.rcpt["b@remote.test"] = "550 5.1.1 <b@remote.test>: no such user"
    s = make_sender()
    rcpts = ["a@remote.test", "b@remote.test", "c@remote.test"]
    s.submit("sender@example.test", rcpts, MSG, ret="HDRS", envid="ENV+2B1")
    s.wait_empty()
    assert sink.transactions[0].accepted == ["a@remote.test", "c@remote.test"]
    (raw,) = wait_for(s.mailbox)
    msg, parts, per_msg, per_rcpt = parse_dsn(raw)
    assert msg["To"].addresses[0].addr_spec == "sender@example.test"
    assert msg["From"].addresses[0].username == "MAILER-DAEMON"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert per_msg["Reporting-MTA"] == "dns; mail.example.test"
    assert per_msg["Original-Envelope-Id"] == "ENV+1"  # RFC 3461 §4: xtext decoded
    (r,) = per_rcpt
    assert r["Final-Recipient"] == "rfc822; b@remote.test"
    assert r["Action"] == "failed" and r["Status"] == "5.1.1"
    assert r["Remote-MTA"] == "dns; 127.0.0.1"
    assert r["Diagnostic-Code"] == "smtp; 550 <b@remote.test>: no such user"
    # RET=HDRS: the header only.
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert b"Subject: test" in parts[2].get_payload(decode=True)
    assert b"Hello there" not in raw


def test_bounce_to_remote_sender_is_queued_with_null_sender(make_sender, sink):
    sink.script.rcpt["a@remote.test"] = "550 5.7.1 rejected"
    s = make_sender()
    s.submit("someone@other.test", ["a@remote.test"], MSG)
    wait_for(lambda: sink.transactions)
    s.wait_empty()
    (t,) = sink.transactions
    assert t.mail_from.startswith("MAIL FROM:<>")
    assert t.accepted == ["someone@other.test"]
    msg, parts, _, per_rcpt = parse_dsn(t.data)
    assert per_rcpt[0]["Action"] == "failed"
    # No RET: the whole message comes back.
    assert parts[2].get_content_type() == "message/rfc822"
    assert parts[2].get_payload()[0]["Subject"] == "test"


def test_no_bounce_for_null_sender_and_no_bounce_loop(make_sender, sink):
    sink.script.rcpt["a@remote.test"] = "550 5.1.1 unknown"
    sink.script.rcpt["someone@other.test"] = "550 5.1.1 unknown too"
    s = make_sender()
    s.submit("", ["a@remote.test"], MSG)
    s.submit("someone@other.test", ["a@remote.test"], MSG)
    wait_for(lambda: len(sink.rcpt_lines) >= 3)
    s.wait_empty()
    time.sleep(0.3)
    # Two original attempts plus one bounce attempt that fails: nothing more, nothing queued.
    assert len(sink.rcpt_lines) == 3 and sink.transactions == []
    assert s.queue_ids() == []


def test_notify_never_suppresses_bounce(make_sender, sink):
    sink.script.rcpt["a@remote.test"] = "550 5.1.1 unknown"
    s = make_sender()
    s.submit("sender@example.test", [Recipient("a@remote.test", ("NEVER",), None)], MSG)
    s.wait_empty()
    time.sleep(0.2)
    assert s.mailbox() == []


def test_delay_warning_sent_once(make_sender, sink):
    sink.script.data_end = ["451 4.4.5 busy"]
    s = make_sender(retry_schedule=[1], delay_warning=0)
    s.submit("sender@example.test", ["a@remote.test"], MSG)
    (raw,) = wait_for(s.mailbox)
    wait_for(lambda: sink.data_count >= 2, timeout=5)
    assert len(s.mailbox()) == 1
    msg, parts, per_msg, per_rcpt = parse_dsn(raw)
    assert per_rcpt[0]["Action"] == "delayed" and per_rcpt[0]["Status"] == "4.4.5"
    assert per_rcpt[0]["Will-Retry-Until"]
    assert parts[2].get_content_type() == "text/rfc822-headers"
    assert s.queue_ids()


def test_gives_up_after_max_age(make_sender, sink):
    sink.script.data_end = ["421 4.3.2 shutting down"]
    s = make_sender(retry_schedule=[1], max_age=1, delay_warning=3600)
    s.submit("sender@example.test", ["a@remote.test"], MSG)
    s.wait_empty(timeout=10)
    (raw,) = s.mailbox()
    _, parts, _, per_rcpt = parse_dsn(raw)
    assert per_rcpt[0]["Action"] == "failed" and per_rcpt[0]["Status"] == "4.3.2"
    assert "expired" in per_rcpt[0]["Diagnostic-Code"]
    assert sink.data_count >= 2


def test_notify_success_relayed_notice_when_next_hop_lacks_dsn(make_sender, sink):
    sink.script.extensions = ["PIPELINING", "8BITMIME"]
    s = make_sender()
    s.submit("sender@example.test", [Recipient("a@remote.test", ("SUCCESS",), None)], MSG)
    s.wait_empty()
    (raw,) = wait_for(s.mailbox)
    _, parts, _, per_rcpt = parse_dsn(raw)
    assert per_rcpt[0]["Action"] == "relayed" and per_rcpt[0]["Status"].startswith("2.")
    assert parts[2].get_content_type() == "text/rfc822-headers"


def test_notify_success_passed_on_to_dsn_capable_next_hop(make_sender, sink):
    s = make_sender()
    s.submit("sender@example.test", [Recipient("a@remote.test", ("SUCCESS", "FAILURE"), None)], MSG)
    s.wait_empty()
    assert "NOTIFY=SUCCESS,FAILURE" in sink.rcpt_lines[0]
    time.sleep(0.2)
    assert s.mailbox() == []  # RFC 3461 §5.2.2: the next hop reports success


def test_null_mx_bounces_without_connecting(make_sender, sink, stub_dns):
    dns_, addr = stub_dns
    dns_.add_mx("nomail.test", (0, ""))
    s = make_sender(resolvers=[addr])
    s.submit("sender@example.test", ["x@nomail.test"], MSG)
    s.wait_empty()
    (raw,) = wait_for(s.mailbox)
    _, _, _, per_rcpt = parse_dsn(raw)
    assert per_rcpt[0]["Status"] == "5.1.10"
    assert sink.connections == 0


def test_mx_lookup_routes_to_the_exchanger(make_sender, sink, stub_dns):
    dns_, addr = stub_dns
    dns_.add_mx("dns.test", (10, "mx.dns.test"))
    dns_.add_a("mx.dns.test", "127.0.0.1")
    s = make_sender(resolvers=[addr], mx_port=sink.port)
    s.submit("sender@example.test", ["x@dns.test"], MSG)
    s.wait_empty()
    assert sink.transactions[0].accepted == ["x@dns.test"]


def test_broken_starttls_retried_in_clear(make_sender, sink):
    sink.script.starttls = "break"
    s = make_sender()
    s.submit("sender@example.test", ["a@remote.test"], MSG)
    s.wait_empty()
    (t,) = sink.transactions
    assert not t.tls and sink.connections == 2


def test_required_tls_not_offered_defers(make_sender, sink):
    sink.script.extensions = ["PIPELINING"]
    s = make_sender(require_tls=["remote.test"])
    s.submit("sender@example.test", ["a@remote.test"], MSG)
    wait_for(lambda: s.runner.entries and not s.runner.active)
    (qid,) = s.queue_ids()
    entry = s.services.queue.load(qid)
    print("DIAG", entry.recipients[0].status, entry.recipients[0].diagnostic, sink.commands)
    assert entry.recipients[0].state == PENDING and entry.recipients[0].status.startswith("4.")
    assert sink.transactions == []


def test_concurrency_limit_per_destination_and_connection_reuse(make_sender, sink):
    sink.script.slow["DATA-END"] = 0.1
    s = make_sender(connections_per_destination=2)
    for i in range(12):
        s.submit("sender@example.test", [f"r{i}@remote.test"], MSG)
    s.wait_empty(timeout=15)
    assert len(sink.transactions) == 12
    assert sink.max_active <= 2
    assert sink.connections < 12  # sessions carry several transactions (RSET between)


def test_idle_connection_is_reused_while_it_lingers_and_closed_after(
    make_sender, sink, monkeypatch
):
    from mailsuite.relay import sending

    monkeypatch.setattr(sending, "LINGER", 0.6)
    s = make_sender()
    s.submit("sender@example.test", ["a@remote.test"], MSG)
    s.wait_empty()
    time.sleep(0.2)  # within LINGER: the same session takes the next message
    s.submit("sender@example.test", ["b@remote.test"], MSG)
    s.wait_empty()
    assert len(sink.transactions) == 2 and sink.connections == 1
    assert sink.active == 1
    idle = time.monotonic()
    wait_for(lambda: sink.active == 0, timeout=5)
    assert 0.4 < time.monotonic() - idle < 2.0
    assert sink.commands[-1] == "QUIT"


def test_total_connection_limit(make_sender, sink):
    sink.script.slow["DATA-END"] = 0.1
    routes = {f"d{i}.test": f"127.0.0.1:{sink.port}" for i in range(6)}
    s = make_sender(connections_total=3, routes=routes)
    for i in range(6):
        s.submit("sender@example.test", [f"x@d{i}.test"], MSG)
    s.wait_empty(timeout=15)
    assert len(sink.transactions) == 6 and sink.max_active <= 3


@pytest.mark.parametrize("mechs", ["PLAIN LOGIN", "LOGIN"])
def test_smarthost_starttls_and_auth(make_sender, sink, mechs):
    sink.script.auth = {"relayuser": "s3cret"}
    sink.script.auth_mechs = mechs
    smarthost = {
        "host": "127.0.0.1",
        "port": sink.port,
        "tls": "starttls",
        "username": "relayuser",
        "password": "s3cret",
    }
    s = make_sender(smarthost=smarthost)
    s.submit("sender@example.test", ["anyone@far-away.test", "a@remote.test"], MSG)
    s.wait_empty()
    (t,) = sink.transactions
    assert t.tls and sorted(t.accepted) == ["a@remote.test", "anyone@far-away.test"]
    assert sink.auth_users == ["relayuser"]
    assert any(c.startswith("AUTH " + mechs.split()[0]) for c in sink.commands)


def test_smarthost_implicit_tls(make_sender, sink):
    sink.script.implicit_tls = True
    sink.script.extensions = ["PIPELINING", "SIZE 0"]
    sink.script.auth = {"u": "p"}
    smarthost = {
        "host": "127.0.0.1",
        "port": sink.tls_port,
        "tls": "implicit",
        "username": "u",
        "password": "p",
    }
    s = make_sender(smarthost=smarthost)
    s.submit("sender@example.test", ["x@far.test"], MSG)
    s.wait_empty()
    assert sink.transactions[0].tls and sink.auth_users == ["u"]


@pytest.mark.parametrize("implicit", [False, True], ids=["starttls", "implicit-tls"])
def test_smarthost_with_verified_tls(make_sender, sink, sink_tls, stub_dns, implicit):
    """tls_verify: the certificate chains to ca_file and names the host: delivered."""
    resolver, dns_addr = stub_dns
    resolver.add_a("sink.test", "127.0.0.1")
    sink.script.auth = {"u": "p"}
    sink.script.implicit_tls = implicit
    smarthost = {
        "host": "sink.test",
        "port": sink.tls_port if implicit else sink.port,
        "tls": "implicit" if implicit else "starttls",
        "username": "u",
        "password": "p",
        "tls_verify": True,
        "ca_file": str(sink_tls[1]),
    }
    s = make_sender(smarthost=smarthost, resolvers=[dns_addr])
    s.submit("sender@example.test", ["x@far.test"], MSG)
    s.wait_empty()
    assert sink.transactions[0].tls and sink.auth_users == ["u"]


def test_smarthost_whose_certificate_fails_verification_never_gets_the_password(
    make_sender, sink, sink_tls
):
    """The sink's certificate names sink.test, the smarthost is reached as 127.0.0.1: the
    session ends after the handshake, the entry is deferred, nothing is authenticated."""
    sink.script.auth = {"u": "p"}
    smarthost = {
        "host": "127.0.0.1",
        "port": sink.port,
        "username": "u",
        "password": "p",
        "tls_verify": True,
        "ca_file": str(sink_tls[1]),
    }
    s = make_sender(smarthost=smarthost)
    s.submit("sender@example.test", ["x@far.test"], MSG)
    wait_for(lambda: s.runner.entries and not s.runner.active and s.queue_ids())
    wait_for(lambda: s.services.queue.load(s.queue_ids()[0]).attempts >= 1)
    entry = s.services.queue.load(s.queue_ids()[0])
    r = entry.recipients[0]
    assert r.state == PENDING and r.status == "4.7.5" and "Verification" in r.diagnostic
    assert sink.auth_users == [] and sink.transactions == []
    assert [c.split()[0] for c in sink.commands] == ["EHLO", "STARTTLS"]  # nothing after it


def test_smarthost_wrong_password_defers(make_sender, sink):
    sink.script.auth = {"u": "right"}
    smarthost = {"host": "127.0.0.1", "port": sink.port, "username": "u", "password": "wrong"}
    s = make_sender(smarthost=smarthost)
    s.submit("sender@example.test", ["x@far.test"], MSG)
    wait_for(lambda: s.runner.entries and not s.runner.active and s.queue_ids())
    wait_for(lambda: s.services.queue.load(s.queue_ids()[0]).attempts >= 1)
    entry = s.services.queue.load(s.queue_ids()[0])
    assert entry.recipients[0].status == "4.7.8" and sink.transactions == []


def test_runner_rebuilds_state_from_disk(tmp_path, sink):
    cfg = relay_config(tmp_path, routes={"remote.test": f"127.0.0.1:{sink.port}"})
    s = Sender(cfg)
    # Queued while no runner is running (e.g. the server was down).
    ids = [
        s.services.queue.enqueue("sender@example.test", ["a@remote.test"], MSG) for _ in range(3)
    ]
    half = s.services.queue.load(ids[0])
    half.recipients[0].state = FAILED  # a failure whose bounce was not yet sent
    half.recipients[0].status = "5.1.1"
    s.services.queue.save(half)
    try:
        s.start()
        s.wait_empty()
    finally:
        s.stop()
    assert len(sink.transactions) == 2
    (raw,) = s.mailbox()
    assert parse_dsn(raw)[3][0]["Status"] == "5.1.1"


def test_backlog_read_from_disk_goes_out_each_message_to_its_recipient(tmp_path, sink):
    # More entries than one batch of reads (READ_BATCH), all due at the start.
    cfg = relay_config(tmp_path, routes={"remote.test": f"127.0.0.1:{sink.port}"})
    s = Sender(cfg)
    queue = Queue(s.services.queue.path)  # as `mailsuite deliver` would: nothing kept in memory
    for i in range(75):
        data = MSG.replace(b"Subject: test", b"Subject: m%d" % i)
        queue.enqueue("sender@example.test", [f"r{i}@remote.test"], data)
    try:
        s.start()
        s.wait_empty()
    finally:
        s.stop()
    got = {tuple(t.accepted): t.data.split(b"\r\n")[2] for t in sink.transactions}
    assert got == {(f"r{i}@remote.test",): b"Subject: m%d" % i for i in range(75)}
    assert len(sink.transactions) == 75


def test_backlog_beyond_the_active_limit_is_taken_up_a_batch_at_a_time(tmp_path, sink, monkeypatch):
    from mailsuite.relay import runner as runner_mod

    monkeypatch.setattr(runner_mod, "MAX_ACTIVE", 10)
    monkeypatch.setattr(runner_mod, "READ_BATCH", 4)
    cfg = relay_config(tmp_path, routes={"remote.test": f"127.0.0.1:{sink.port}"})
    s = Sender(cfg)
    queue = Queue(s.services.queue.path)
    for i in range(43):
        queue.enqueue("sender@example.test", [f"r{i}@remote.test"], MSG)
    submits = []
    submit = s.services.queue.io.submit
    monkeypatch.setattr(
        s.services.queue.io, "submit", lambda work, *a: submits.append(work) or submit(work, *a)
    )
    try:
        s.start()
        s.wait_empty()
        assert len(s.runner.active) == 0
    finally:
        s.stop()
    assert sorted(t.accepted[0] for t in sink.transactions) == sorted(
        f"r{i}@remote.test" for i in range(43)
    )
    # Read in batches of READ_BATCH, never one entry per trip once the backlog is held back.
    reads = [w for w in submits if getattr(w, "__name__", "") == "_read"]
    assert len(reads) <= 43 // 4 + 3


def test_stop_leaves_entry_for_next_start(tmp_path, sink):
    sink.script.slow["DATA-END"] = 1.0
    cfg = relay_config(tmp_path, routes={"remote.test": f"127.0.0.1:{sink.port}"})
    s = Sender(cfg)
    s.start()
    s.submit("sender@example.test", ["a@remote.test"], MSG)
    wait_for(lambda: sink.commands and sink.commands[-1] == "." or sink.active and s.runner.active)
    s.stop()
    assert len(s.queue_ids()) == 1
    sink.script.slow.clear()
    s2 = Sender.__new__(Sender)
    s2.__dict__.update(s.__dict__)
    from mailsuite.relay.runner import build_service

    s2.runner = build_service(s.services, s.services.delivery.deliver_notice)
    s2.start()
    try:
        s2.wait_empty()
    finally:
        s2.stop()
    assert len(sink.transactions) >= 1


def test_stop_removes_the_entries_waiting_for_their_removal_batch(tmp_path, sink, monkeypatch):
    from mailsuite.relay import runner as runner_mod

    monkeypatch.setattr(runner_mod, "REMOVE_DELAY", 60.0)  # the batch is still waiting at stop
    cfg = relay_config(tmp_path, routes={"remote.test": f"127.0.0.1:{sink.port}"})
    s = Sender(cfg)
    s.start()
    s.submit("sender@example.test", ["a@remote.test"], MSG)
    wait_for(lambda: s.runner.to_remove)
    assert len(s.queue_ids()) == 1 and len(sink.transactions) == 1
    s.stop()
    assert s.queue_ids() == []  # delivered, so not sent again after a restart
    assert len(sink.transactions) == 1


def test_in_reactor_helper_roundtrip():
    assert in_reactor(lambda: 42) == 42


def test_unreachable_first_mx_falls_back_to_next(make_sender, sink, stub_dns):
    # RFC 5321 §5.1: try the MX hosts in preference order; 127.0.0.2 refuses the connection.
    dns_, addr = stub_dns
    dns_.add_mx("two.test", (10, "down.two.test"), (20, "up.two.test"))
    dns_.add_a("down.two.test", "127.0.0.2")
    dns_.add_a("up.two.test", "127.0.0.1")
    s = make_sender(resolvers=[addr], mx_port=sink.port)
    s.submit("sender@example.test", ["x@two.test"], MSG)
    s.wait_empty()
    assert sink.transactions[0].accepted == ["x@two.test"]


def test_ipv6_only_exchanger(make_sender, sink6, stub_dns):
    dns_, addr = stub_dns
    dns_.add_mx("six.test", (10, "mx.six.test"))
    dns_.add_aaaa("mx.six.test", "::1")
    s = make_sender(resolvers=[addr], mx_port=sink6.port)
    s.submit("sender@example.test", ["x@six.test"], MSG)
    s.wait_empty()
    assert sink6.transactions[0].accepted == ["x@six.test"]


def test_outbound_mail_from_local_domain_is_dkim_signed(make_sender, sink):
    from mailsuite.trust import dkim

    s = make_sender()
    dkim.generate_key(s.config, "example.test", "relay1", "rsa")
    s.runner.signing_possible.checked = 0.0  # keys appeared: probe again now
    s.submit("sender@example.test", ["a@remote.test"], MSG)
    s.wait_empty()
    (t,) = sink.transactions
    assert t.data.startswith(b"DKIM-Signature:")
    assert b"d=example.test" in t.data and b"s=relay1" in t.data
    assert t.data.endswith(MSG)


def test_entry_enqueued_by_another_process_is_picked_up_promptly(make_sender, sink):
    from mailsuite.spool.queue import Queue

    s = make_sender(scan_interval=0.2)
    # A second Queue object without listeners, as `mailsuite deliver` has in its own process.
    other = Queue(s.config.queue_dir)
    other.enqueue("sender@example.test", ["a@remote.test"], MSG)
    s.wait_empty(timeout=3)  # well before the periodic re-scan (30 intervals = 6 s)
    assert len(sink.transactions) == 1


def test_notice_to_full_local_mailbox_is_retried_then_given_up(make_sender, sink):
    sink.script.rcpt["a@remote.test"] = "550 5.1.1 unknown"
    s = make_sender(retry_schedule=[1], max_age=2)
    s.services.accounts.set_quota("sender@example.test", 1, 0)  # every delivery is over quota
    s.submit("sender@example.test", ["a@remote.test"], MSG)
    wait_for(lambda: s.queue_ids() and s.services.queue.load(s.queue_ids()[0]).attempts >= 1)
    entry = s.services.queue.load(s.queue_ids()[0])
    assert entry.recipients[0].state == FAILED and not entry.recipients[0].dsn_sent
    s.wait_empty(timeout=8)
    assert s.mailbox() == []


def test_connection_dropped_mid_data_is_retried_and_delivered_once(make_sender, sink):
    sink.script.drop_after = 5000
    s = make_sender(retry_schedule=[1])
    big = MSG + b"z" * 100 + b"\r\n" + (b"line of body text\r\n" * 3000)
    s.submit("sender@example.test", ["a@remote.test"], big)
    wait_for(lambda: s.queue_ids() and s.services.queue.load(s.queue_ids()[0]).attempts == 1)
    entry = s.services.queue.load(s.queue_ids()[0])
    assert entry.recipients[0].status == "4.4.2" and sink.transactions == []
    sink.script.drop_after = None
    s.wait_empty(timeout=5)
    (t,) = sink.transactions
    assert t.data == big
    assert s.mailbox() == []


def test_too_many_recipients_sent_in_further_transactions_at_once(make_sender, sink):
    sink.script.rcpt_limit = 2
    s = make_sender(retry_schedule=[3600])
    rcpts = [f"r{i}@remote.test" for i in range(5)]
    s.submit("sender@example.test", rcpts, MSG)
    s.wait_empty(timeout=5)  # no waiting for a retry
    assert [t.accepted for t in sink.transactions] == [rcpts[0:2], rcpts[2:4], rcpts[4:5]]
    assert sink.connections == 1


def test_more_than_100_recipients_split_into_transactions(make_sender, sink):
    s = make_sender()
    rcpts = [f"r{i}@remote.test" for i in range(150)]
    s.submit("sender@example.test", rcpts, MSG)
    s.wait_empty(timeout=10)
    assert sorted(len(t.accepted) for t in sink.transactions) == [50, 100]
