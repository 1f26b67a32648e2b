"""Folder.read / read_present / open / parsed_loader: the store's ways to a message's bytes
and its parse results, so that no protocol joins Maildir paths itself."""

from __future__ import annotations

import os
import threading

from mailsuite.store.parsed_cache import CACHE_NAME


def _file(folder, msg) -> str:
    return os.path.join(folder.path, msg.subdir, msg.filename)


def test_read_present_gives_bytes_and_none_after_a_rename_behind_our_back(mbox, make_message):
    mbox.deliver(make_message(1))
    folder = mbox.folder("INBOX")
    msg = folder.messages[0]
    assert msg.is_new
    raw = folder.read_present(msg)
    assert raw == make_message(1).replace(b"\r\n", b"\n")
    # another program takes the message up: new/ -> cur/ with flags
    os.rename(_file(folder, msg), os.path.join(folder.path, "cur", msg.key + ":2,S"))
    assert folder.read_present(msg) is None
    assert folder.read(msg) == raw  # read() follows the rename
    assert not folder.by_uid(msg.uid).is_new


def test_read_takes_a_file_longer_than_the_index_says(mbox, make_message):
    mbox.deliver(make_message(2))
    folder = mbox.folder("INBOX")
    msg = folder.messages[0]
    with open(_file(folder, msg), "ab") as f:
        f.write(b"x" * (3 * 1024 * 1024))
    data = folder.read(msg)
    assert len(data) == msg.size + 3 * 1024 * 1024
    assert folder.read_present(msg) == data


def test_open_unbuffered_follows_a_rename(mbox, make_message):
    mbox.deliver(make_message(3))
    folder = mbox.folder("INBOX")
    msg = folder.messages[0]
    os.rename(_file(folder, msg), os.path.join(folder.path, "cur", msg.key + ":2,F"))
    with folder.open(msg, buffering=0) as f:
        assert not hasattr(f, "raw")  # a FileIO, no buffer object around it
        assert f.read().startswith(b"From: a@example.net\n")


def test_parsed_loader_keeps_the_parse_in_the_maildirs_cache(mbox, make_message):
    mbox.deliver(make_message(4))
    folder = mbox.folder("INBOX")
    msg = folder.messages[0]
    header = folder.parsed_loader()(msg).header()
    assert header.endswith(b"Subject: test 4\r\n\r\n")
    tree = folder.parsed_loader()(msg).tree()
    folder.parsed_cache.flush()
    assert (mbox.path / CACHE_NAME).exists()
    os.unlink(_file(folder, msg))
    # the file is gone: header and tree still come from the cache
    content = folder.parsed_loader()(msg)
    assert content.header() == header
    assert content.tree().end == tree.end
    assert content.envelope().subject == b"test 4"


def test_parsed_loader_in_a_thread_reads_a_vanished_file_as_empty(mbox, make_message):
    mbox.deliver(make_message(5))
    folder = mbox.folder("INBOX")
    msg = folder.messages[0]
    os.unlink(_file(folder, msg))
    result = []
    t = threading.Thread(
        target=lambda: result.append(folder.parsed_loader(in_thread=True)(msg).raw_bytes())
    )
    t.start()
    t.join()
    assert result == [b""]
