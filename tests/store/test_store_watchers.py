"""Mailbox watchers (what IMAP NOTIFY listens to): every change made through the store in this
process reaches them, named as the user sees it."""

from __future__ import annotations

from mailsuite.store import MailboxEvent


def watch(mbox) -> list[MailboxEvent]:
    heard: list[MailboxEvent] = []
    mbox.add_listener(heard.append)
    return heard


def test_folder_changes_are_announced_by_name(mbox):
    heard = watch(mbox)
    mbox.create_folder("Projects")
    mbox.create_folder("Projects/Old")
    mbox.rename_folder("Projects", "Done")
    mbox.subscribe("Done")
    mbox.unsubscribe("Done")
    mbox.delete_folder("Done/Old")
    assert [(e.kind, e.name, e.old_name) for e in heard] == [
        ("created", "Projects", None),
        ("created", "Projects/Old", None),
        ("renamed", "Done", "Projects"),
        ("renamed", "Done/Old", "Projects/Old"),
        ("subscribed", "Done", None),
        ("unsubscribed", "Done", None),
        ("deleted", "Done/Old", None),
    ]


def test_subscribing_twice_announces_once(mbox):
    heard = watch(mbox)
    mbox.subscribe("Sent")  # already subscribed with the account
    mbox.unsubscribe("Nowhere")
    assert heard == []


def test_open_folders_events_carry_their_folder_event(mbox, make_message):
    folder = mbox.folder("Sent")
    heard = watch(mbox)
    key = mbox.deliver(make_message(1), "Sent")
    uid = folder.index_delivered(key)
    folder.store_flags([folder.by_uid(uid)], ["\\Seen"], "add")
    assert [(e.kind, e.name, e.folder_event.kind) for e in heard] == [
        ("messages", "Sent", "exists"),
        ("messages", "Sent", "flags"),
    ]


def test_a_delivery_into_a_folder_nobody_has_open_is_named(store, mbox, make_message):
    heard = watch(mbox)
    mbox.deliver(make_message(1), "Archive")
    store.notify_delivery("alice@example.test", "Archive")
    assert [(e.kind, e.name, e.folder_event) for e in heard] == [("messages", "Archive", None)]


def test_a_renamed_folders_old_object_speaks_no_more(mbox, make_message):
    old = mbox.folder("Drafts")
    old.index_delivered(mbox.deliver(make_message(1), "Drafts"))
    mbox.rename_folder("Drafts", "Drafts2")
    heard = watch(mbox)
    old.refresh(force=True)  # its directory is gone: its message reads as expunged
    assert old.messages == []
    assert heard == []


def test_removed_watchers_hear_nothing(mbox):
    heard: list = []
    mbox.add_listener(heard.append)
    mbox.remove_listener(heard.append)
    mbox.create_folder("Quiet")
    assert heard == []
