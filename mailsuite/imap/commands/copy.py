"""COPY, UID COPY (RFC 3501 §6.4.7, COPYUID RFC 4315 §3) and MOVE, UID MOVE (RFC 6851)."""

from __future__ import annotations

from mailsuite.imap.commands.expunge import expunge_messages
from mailsuite.imap.commands.mailbox import mailbox_arg, store_error
from mailsuite.imap.parser import ImapBad, ImapNo
from mailsuite.imap.sequence import format_uid_pairs, parse_sequence_set
from mailsuite.store import BadFolderName, NoSuchFolder, QuotaExceeded


def _copy(session, cmd, uid: bool, move: bool):
    if len(cmd.args) != 2:
        raise ImapBad(f"{cmd.name} needs a message set and a mailbox")
    view = session.view
    seqset = parse_sequence_set(cmd.args[0])
    dest_name = mailbox_arg(session, cmd.args[1])
    view.check_seqset(seqset, uid)
    if move and view.readonly:
        raise ImapNo("READ-ONLY", "Mailbox is read-only")
    try:
        if not session.mailbox.exists(dest_name):
            # RFC 3501 §6.4.7: TRYCREATE when the destination does not exist.
            raise ImapNo("TRYCREATE", "Mailbox does not exist")
    except BadFolderName as e:
        raise store_error(e) from None
    selected = view.select(seqset, uid)
    msgs = [m for _, m in selected if view.is_live(m)]
    if move:
        # a message another session is moving right now is as good as gone
        msgs = view.folder.claim_move(msgs)
    if not uid and len(msgs) != len(selected):
        if move:
            view.folder.release_move(msgs)
        # RFC 2180 §4.4.1 / RFC 5530: some messages were expunged by another session.
        raise ImapNo("EXPUNGEISSUED", "Some of the messages no longer exist")
    if not msgs:
        return None
    same = dest_name == view.folder.name
    d = session.mailbox.copy(view.folder, msgs, dest_name)

    def copied(result):
        dest, pairs = result
        if not pairs:
            return None
        if move:
            _carry_flags(view.folder, dest, pairs)
        # Into or out of Junk teaches the user's junk filter (queued: no wait here).
        session.services.junk.after_copy(session.mailbox, view.folder, dest, pairs)
        src_uids = format_uid_pairs([s for s, _ in pairs])
        dst_uids = format_uid_pairs([d for _, d in pairs])
        code = f"COPYUID {dest.uidvalidity} {src_uids} {dst_uids}"
        if not move:
            return (code, f"{cmd.name} completed")
        # RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGE responses.
        session.send(f"* OK [{code}] Moved\r\n".encode())
        # The flags carried over are renames queued on the destination: on disk before the
        # tagged OK, as the sources' unlinks are (expunge_messages).
        if session.view is not view:
            return dest.when_written()
        done = {s for s, _ in pairs}
        expunged = dest.when_written(expunge_messages(session, [m for m in msgs if m.uid in done]))
        if not same:
            return expunged
        if expunged is None:
            _announce_copies(session, view)
            return None
        return expunged.addCallback(lambda _: _announce_copies(session, view))

    def failed(failure):
        e = failure.value
        if isinstance(e, (NoSuchFolder, QuotaExceeded, BadFolderName, OSError)):
            raise store_error(e)
        return failure

    d.addCallbacks(copied, failed)
    if move:
        d.addBoth(_released, view.folder, msgs)
    return d


def _announce_copies(session, view) -> None:
    """Within one mailbox the sources' EXPUNGEs come first, then the copies' EXISTS: a client
    applying them in order never counts a message twice."""
    if session.view is view:
        view.pending_exists = True
        session.send_updates(expunge_ok=False)


def _released(result, folder, msgs):
    folder.release_move(msgs)
    return result


def _carry_flags(src, dest, pairs) -> None:
    """A flag change another session made while the copies were being written lands on the
    copies too: an acknowledged STORE is never lost to a MOVE."""
    for s, d in pairs:
        old, new = src.by_uid(s), dest.by_uid(d)
        if old is None or new is None:
            continue
        want = old.flags - {"\\Recent"}
        if new.flags != want:
            dest.store_flags([new], sorted(want), "set")


def copy(session, cmd):
    return _copy(session, cmd, uid=False, move=False)


def uid_copy(session, cmd):
    return _copy(session, cmd, uid=True, move=False)


def move(session, cmd):
    return _copy(session, cmd, uid=False, move=True)


def uid_move(session, cmd):
    return _copy(session, cmd, uid=True, move=True)
