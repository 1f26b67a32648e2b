"""mbsync (Debian isync) mirrors an account to a local Maildir and back over IMAPS:
flags, deletions, moves and new messages on both sides, with no duplicates (UIDPLUS,
stable UIDs and UIDVALIDITY, BODY.PEEK[HEADER.FIELDS (X-TUID)] lookups)."""

import email
import subprocess
from pathlib import Path

from tests.conftest import DEFAULT_PASSWORD
from tests.imap.conftest import IMAP_ONLY, USER, message


def _config(srv, local: Path) -> Path:
    conf = local.parent / "mbsyncrc"
    conf.write_text(
        f"""IMAPAccount test
Host localhost
Port {srv.port("imaps")}
User {USER}
Pass {DEFAULT_PASSWORD}
SSLType IMAPS
CertificateFile {srv.config.tls.cert}

IMAPStore remote
Account test

MaildirStore local
Path {local}/
Inbox {local}/INBOX
SubFolders Verbatim

Channel sync
Far :remote:
Near :local:
Patterns *
Create Both
Expunge Both
Remove None
SyncState *
"""
    )
    return conf


def _run(conf: Path) -> None:
    p = subprocess.run(
        ["mbsync", "-c", str(conf), "-a"], capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stdout + p.stderr


def _local_files(local: Path, folder: str) -> list[Path]:
    base = local / folder
    return sorted(p for sub in ("cur", "new") for p in (base / sub).glob("*") if p.is_file())


def _server_state(srv, folder: str) -> list[tuple[str, bytes]]:
    c = connect_tls(srv)
    c.select(folder, readonly=True)
    typ, data = (
        c.fetch("1:*", "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        if _count(c, folder)
        else ("OK", [])
    )
    out = []
    for item in data:
        if isinstance(item, tuple):
            subject = email.message_from_bytes(item[1])["Subject"]
            out.append((subject, item[0]))
    c.logout()
    return out


def _count(c, folder) -> int:
    typ, data = c.status(folder, "(MESSAGES)")
    return int(data[0].split(b"MESSAGES ")[1].rstrip(b")"))


def test_mbsync_round_trip(server_factory, tmp_path):
    # The self-signed certificate names the configured host name; mbsync checks it.
    srv = server_factory(listen=IMAP_ONLY, hostname="localhost")
    srv.add_user(USER)
    c = connect_tls(srv)
    for i in range(1, 6):
        c.append("INBOX", "(\\Seen)" if i == 1 else None, None, message(i))
    c.append("Archive", None, None, message(10, subject="Archived A"))
    c.append("Archive", None, None, message(11, subject="Archived B"))
    c.logout()

    local = tmp_path / "mirror"
    local.mkdir()
    conf = _config(srv, local)
    _run(conf)
    assert len(_local_files(local, "INBOX")) == 5
    assert len(_local_files(local, "Archive")) == 2
    seen = [p for p in _local_files(local, "INBOX") if p.name.endswith("S")]
    assert len(seen) == 1

    # Local changes: flag one, delete one, move one to Archive, add one to Archive.
    files = {
        email.message_from_bytes(p.read_bytes())["Subject"]: p for p in _local_files(local, "INBOX")
    }
    p2 = files["Test message 2"]
    p2.rename(p2.parent.parent / "cur" / (p2.name.split(":2,")[0] + ":2,F"))
    files["Test message 3"].unlink()
    p4 = files["Test message 4"]
    name4 = p4.name.split(",U=")[0] + "-moved"
    (local / "Archive" / "cur" / (name4 + ":2,S")).write_bytes(p4.read_bytes())
    p4.unlink()
    (local / "Archive" / "new" / "1700000000.local1.host").write_bytes(
        message(20, subject="Written locally").replace(b"\r\n", b"\n")
    )
    # A server-side change too: a new message in INBOX.
    c = connect_tls(srv)
    c.append("INBOX", None, None, message(6, subject="Arrived on server"))
    c.logout()

    _run(conf)
    _run(conf)  # a second pass must change nothing and create no duplicates

    inbox = _server_state(srv, "INBOX")
    subjects = sorted(s for s, _ in inbox)
    assert subjects == ["Arrived on server", "Test message 1", "Test message 2", "Test message 5"]
    flags = dict(inbox)
    assert b"\\Flagged" in flags["Test message 2"] and b"\\Seen" in flags["Test message 1"]
    archive = sorted(s for s, _ in _server_state(srv, "Archive"))
    assert archive == ["Archived A", "Archived B", "Test message 4", "Written locally"]
    assert len(_local_files(local, "INBOX")) == 4
    assert len(_local_files(local, "Archive")) == 4


def connect_tls(srv):
    import imaplib
    import ssl

    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    c = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=ctx, timeout=10)
    c.login(USER, DEFAULT_PASSWORD)
    return c
