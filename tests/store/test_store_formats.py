"""Property tests of the store's pure formats: dovecot-uidlist lines and Maildir info flags."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mailsuite.store import uidlist
from mailsuite.store.flags import SYSTEM_TO_LETTER, Keywords, split_filename

# Maildir base names: no "/", no NUL, no newline, no ":" (the info separator).
base_name = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="/\0\n\r: "),
    min_size=1,
    max_size=40,
)


@settings(max_examples=200, deadline=None)
@given(
    st.integers(1, 2**32 - 1),
    st.lists(base_name, unique=True, max_size=30),
    st.integers(0, 5),
)
def test_uidlist_written_lines_parse_back(validity, keys, gap):
    uids = list(range(1, 1 + (gap + 1) * len(keys), gap + 1))
    ul = uidlist.Uidlist(validity, 1, dict(zip(keys, uids, strict=True)))
    data = uidlist.format_header(ul) + b"".join(
        uidlist.format_line(u, k) for k, u in zip(keys, uids, strict=True)
    )
    back = uidlist.parse(data)
    assert back.uidvalidity == validity
    assert back.entries == dict(zip(keys, uids, strict=True))
    assert back.next_uid == (uids[-1] + 1 if uids else 1)
    assert back.offset == len(data)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_uidlist_parser_never_fails_other_than_corrupt(data):
    try:
        ul = uidlist.parse(data)
    except uidlist.CorruptUidlist:
        return
    assert ul.offset <= len(data)
    assert all(uid < ul.next_uid for uid in ul.entries.values())


def test_uidlist_extension_fields_and_incomplete_last_line():
    data = b"3 V5 N2 Gabc\n1 W1234 S1200 :a,S=1200\n7 G1 :b\n8 :unfinished"
    ul = uidlist.parse(data)
    assert ul.entries == {"a,S=1200": 1, "b": 7}
    assert ul.next_uid == 8  # the larger of N and the last complete line + 1
    assert ul.offset == data.rindex(b"\n") + 1


keyword = st.text(alphabet="abcdefghijklmnopqrstuvwxyz$_-0123456789", min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    st.sets(st.sampled_from(sorted(SYSTEM_TO_LETTER))),
    st.sets(keyword, max_size=8),
)
def test_flags_survive_the_file_name(tmp_path_factory, system, keywords):
    folder = tmp_path_factory.mktemp("kw")
    kw = Keywords(folder)
    flags = frozenset(system) | frozenset(keywords)
    info = kw.to_info(flags | {"\\Recent"})  # \Recent is a session notion: never stored
    assert info == "".join(sorted(info))  # Maildir wants the letters in ASCII order
    assert kw.to_flags(info) == flags
    # And a fresh reader of dovecot-keywords (another process) agrees.
    assert Keywords(folder).to_flags(info) == flags
    key, parsed_info = split_filename(f"123.M4P5.host,S=10:2,{info}")
    assert (key, parsed_info) == ("123.M4P5.host,S=10", info)


def test_more_than_26_keywords_are_not_stored(tmp_path):
    kw = Keywords(tmp_path)
    names = [f"kw{i}" for i in range(30)]
    info = kw.to_info(frozenset(names))
    assert len(info) == 26
    assert len(kw.to_flags(info)) == 26


def test_messages_with_one_info_share_one_flag_set(tmp_path):
    """Readers that hash or compare flag sets (IMAP's FLAGS rendering) get one shared set per
    info string; a letter another process names later is still seen once it is named."""
    kw = Keywords(tmp_path)
    info = kw.to_info(frozenset({"\\Seen", "$Work"}))
    assert kw.to_flags(info) is kw.to_flags(info) == frozenset({"\\Seen", "$Work"})
    other = Keywords(tmp_path)
    later = other.to_info(frozenset({"$Later"}))  # written to dovecot-keywords by another
    assert kw.to_flags(info + later) == frozenset({"\\Seen", "$Work", "$Later"})
    # A letter nobody has named reads as nothing, and is looked up again next time.
    unnamed = chr(ord(later) + 1)
    assert kw.to_flags("S" + unnamed) == frozenset({"\\Seen"})
    Keywords(tmp_path).to_info(frozenset({"$Third"}))
    assert kw.to_flags("S" + unnamed) == frozenset({"\\Seen", "$Third"})
