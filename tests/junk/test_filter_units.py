"""The filter's pure parts: tokens, word statistics, verdicts, and its SQLite file."""

from __future__ import annotations

import base64
import math
import stat

from mailsuite.junk import classifier, model
from mailsuite.junk import tokens as tokens_module
from mailsuite.junk.dnslists import DnsList, reversed_name
from mailsuite.junk.filter import author_addresses
from mailsuite.junk.model import HAM, JUNK, FilterData, message_identity
from mailsuite.junk.tokens import MAX_TEXT, _link_hosts, message_tokens, url_domains
from mailsuite.junk.verdict import Signal, decide, strip_forged
from mailsuite.message.addresses import parse_addresses
from mailsuite.message.headers import unfold
from mailsuite.message.lines import header_end, to_wire
from mailsuite.message.structure import parse_message
from tests.junk.corpus import make_message


def test_tokens_come_from_decoded_headers_text_and_html_links():
    raw = (
        b"From: =?utf-8?b?V2lubmVy?= <a@prize.example>\r\nSubject: =?utf-8?q?Gro=C3=9Fer_Preis?=\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary=b\r\n\r\n"
        b"--b\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"Y2xhaW0geW91ciBwcml6ZQ==\r\n"
        b"--b\r\nContent-Type: text/html\r\n\r\n<p>Visit <a href='http://x.win.example/a'>us</a>"
        b"<script>var hidden = 1</script>&amp; enjoy</p>\r\n--b--\r\n"
    )
    tokens = message_tokens(raw)
    assert {"from:winner", "from:@prize.example", "subject:großer", "subject:preis"} <= tokens
    assert {"claim", "your", "prize", "visit", "enjoy"} <= tokens
    assert {"url:x.win.example", "url:win.example", "part:text/html"} <= tokens
    assert "hidden" not in tokens and "script" not in tokens
    assert url_domains(raw) == ["win.example", "x.win.example"]


def test_link_hosts_follow_a_known_scheme_and_do_not_overlap():
    assert _link_hosts("see http://a.example/x and https://b.example?q") == [
        "a.example",
        "b.example",
    ]
    assert _link_hosts("://ftphttp://x.y/") == ["x.y"]  # a bare "://" is no link
    assert _link_hosts("http://http://x") == ["http:"]  # "://" inside a host: not another
    assert _link_hosts("sftp://files.example") == ["files.example"]
    assert _link_hosts("http:///nohost http://ok") == ["ok"]
    assert _link_hosts("mailto:x@y gopher://no") == []


def test_text_is_read_up_to_its_budget_and_after_large_attachments():
    filler = b"plain words here " * (MAX_TEXT // 16)
    head = b"Subject: s\r\nContent-Type: text/plain\r\n\r\n"
    assert "zebracorn" in message_tokens(head + b"zebracorn " + filler)
    assert "zebracorn" not in message_tokens(head + filler + b" zebracorn")
    attachment = base64.encodebytes(bytes(range(256)) * 400)  # 100 KB before the text
    mixed = (
        b'Subject: s\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: image/png; name=a.png\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + attachment
        + b"\r\n--b\r\nContent-Type: text/plain\r\n\r\nzebracorn\r\n--b--\r\n"
    )
    assert {"zebracorn", "part:image/png", "filename:png"} <= message_tokens(mixed)


def test_long_messages_are_told_apart_at_the_stated_rate(tmp_path):
    """Trained on 50 + 50 messages of 30 KB, judged on 25 + 25 held out: at least 90 % of the
    junk is junk, no legitimate message is (the rate of the IMAP-trained server test), with
    only the first MAX_TEXT of their text read."""
    data = FilterData(tmp_path / "f.sqlite")
    for n in range(50):
        for kind, label in ((JUNK, "junk"), (HAM, "ham")):
            raw = make_message(label, n, seed=11, size=30_000)
            data.learn(message_identity(raw), message_tokens(raw), kind)
    n_junk, n_ham = data.totals()

    def probability(raw: bytes) -> float:
        tokens = message_tokens(raw)
        return classifier.judge(data.counts(tokens), n_junk, n_ham, 10).probability

    junk = [probability(make_message("junk", n, seed=12, size=30_000)) for n in range(25)]
    ham = [probability(make_message("ham", n, seed=12, size=30_000)) for n in range(25)]
    assert sum(p >= 0.95 for p in junk) >= 0.9 * 25, junk  # 6 × (2p − 1) >= 5: Junk
    assert not any(p >= 0.5 for p in ham), ham


def test_our_own_headers_are_not_words():
    raw = b"X-Spam-Status: Yes, score=9\r\nReceived: from mx.here\r\nSubject: hello\r\n\r\nbody\r\n"
    tokens = message_tokens(raw)
    assert "yes" not in tokens and "here" not in tokens
    assert "subject:hello" in tokens


def test_fisher_combining_is_unsure_with_evidence_both_ways():
    assert classifier.combine([]) == 0.5
    assert classifier.combine([0.99] * 10) > 0.99
    assert classifier.combine([0.01] * 10) < 0.01
    assert abs(classifier.combine([0.99] * 10 + [0.01] * 10) - 0.5) < 0.01


def test_clues_are_the_strongest_words_as_clamped_and_as_word_probability_says():
    counts = {"a": (3000, 0), "b": (9000, 0), "c": (5, 5), "d": (0, 40), "e": (2, 0)}
    j = classifier.judge(counts, 10_000, 10_000, min_trained=10)
    # a and b both clamp to 0.9999: equally strong, in the order they came; c is no clue
    assert [t for t, _ in j.clues] == ["a", "b", "d", "e"]
    assert j.clues[0][1] == j.clues[1][1] == 0.9999
    for token, f in j.clues[2:]:
        assert f == classifier.word_probability(*counts[token], 10_000, 10_000)
    assert chi2_series(50.0, 300) == classifier.chi2_q(50.0, 300)
    assert chi2_series(700.0, 300) == classifier.chi2_q(700.0, 300)
    assert chi2_series(1600.0, 300) == classifier.chi2_q(1600.0, 300) == 0.0  # exp underflows


def chi2_series(x2: float, dof: int) -> float:
    """The series of chi2_q summed to its last term."""
    m = x2 / 2.0
    term = total = math.exp(-m)
    for i in range(1, dof // 2):
        term *= m / i
        total += term
    return min(total, 1.0)


def test_untrained_judgement_is_neutral():
    j = classifier.judge({"viagra": (9, 0)}, 9, 20, min_trained=10)
    assert (j.probability, j.trained) == (0.5, False)


def test_allow_list_and_correspondents_keep_mail_out_of_junk_block_list_files_it():
    base = dict(
        junk_folder="Junk",
        default_folder="INBOX",
        judgement=classifier.Judgement(1.0, (("cheap", 0.99),), True),
        signals=[Signal("DNSBL bl.example 127.0.0.2", 4.0)],
        junk_score=5.0,
        reject_score=9.0,
        bayes_weight=6.0,
        may_refuse=True,
    )
    v = decide(listed=None, correspondent=None, **base)
    assert (v.folder, v.junk, v.refuse, v.score) == ("Junk", True, True, 10.0)
    assert "DNSBL bl.example 127.0.0.2 (+4.0)" in v.reasons
    v = decide(listed=("allow", "example.org"), correspondent=None, **base)
    assert (v.folder, v.refuse) == ("INBOX", False)
    v = decide(listed=None, correspondent="bob@example.org", **base)
    assert (v.folder, v.refuse) == ("INBOX", False)
    base["judgement"] = classifier.Judgement(0.0, (), True)
    base["signals"] = []
    v = decide(listed=("block", "spam.example"), correspondent=None, **base)
    assert (v.folder, v.junk, v.refuse) == ("Junk", True, False)


def test_forged_spam_fields_are_stripped_from_the_header_only():
    data = b"X-Spam-Score: -50\r\n\tcontinued\r\nSubject: s\r\n\r\nX-Spam-Score: body stays\r\n"
    assert strip_forged(data) == b"Subject: s\r\n\r\nX-Spam-Score: body stays\r\n"


def test_learning_twice_counts_once_and_relearning_moves_the_counts(tmp_path):
    data = FilterData(tmp_path / "f.sqlite")
    assert data.learn("id:1", {"a", "b"}, JUNK)
    assert not data.learn("id:1", {"a", "b"}, JUNK)
    assert data.counts({"a", "c"}) == {"a": (1, 0)}
    assert data.learn("id:1", {"a", "b"}, HAM)
    assert data.totals() == (0, 1)
    assert data.counts({"a"}) == {"a": (0, 1)}
    assert data.forget("id:1", {"a", "b"})
    assert data.counts({"a"}) == {} and data.totals() == (0, 0)
    assert stat.S_IMODE((tmp_path / "f.sqlite").stat().st_mode) == 0o600


def test_list_entries_match_addresses_and_parent_domains(tmp_path):
    data = FilterData(tmp_path / "f.sqlite")
    data.set_listed("@Example.ORG", "allow")
    data.set_listed("bad@mail.example.org", "block")
    assert data.list_match(["x@sub.example.org"]) == ("allow", "example.org")
    assert data.list_match(["bad@mail.example.org"]) == ("block", "bad@mail.example.org")
    assert data.list_match(["x@example.com"]) is None


def test_counts_of_many_tokens_come_in_one_statement(tmp_path):
    data = FilterData(tmp_path / "f.sqlite")
    learned = {f"word{n}" for n in range(1500)} | {'quote"d', "tab\there", "ünïcode", "ctrl\x01"}
    data.learn("id:1", learned, JUNK)
    data.learn("id:2", {"word7", "other"}, HAM)
    asked = learned | {"unseen", "never"}  # more than SQLite's 999 parameters of old builds
    counts = data.counts(asked)
    assert counts == {**{t: (1, 0) for t in learned}, "word7": (1, 1)}
    assert data.counts([]) == {}
    assert FilterData(tmp_path / "none.sqlite").counts({"a"}) == {}


def test_words_held_in_memory_follow_lessons_and_other_connections(tmp_path):
    resident = model._RESIDENT.words
    data = FilterData(tmp_path / "f.sqlite")
    data.learn("id:1", {"a", "b"}, JUNK)
    assert data.counts({"a", "c"}) == {"a": (1, 0)}  # now held in memory
    assert data._words is not None
    data.learn("id:1", {"a", "b"}, HAM)  # relearned: moved in the file and in memory
    data.learn("id:2", {"b", "c"}, HAM)
    assert data.counts({"a", "b", "c"}) == {"a": (0, 1), "b": (0, 2), "c": (0, 1)}
    data.forget("id:1", {"a", "b"})
    assert data.counts({"a", "b", "c"}) == {"b": (0, 1), "c": (0, 1)}
    # another connection (the admin command's) writes: read again from the file
    other = FilterData(tmp_path / "f.sqlite")
    other.learn("id:3", {"c", "d"}, JUNK)
    assert data.counts({"a", "b", "c", "d"}) == {"b": (0, 1), "c": (1, 1), "d": (1, 0)}
    other.reset()
    assert data.counts({"b", "c", "d"}) == {}
    data.learn("id:4", {"e"}, JUNK)
    assert data.counts({"e"}) == {"e": (1, 0)} == other.counts({"e"})
    data.reset()
    assert data.counts({"e"}) == {}
    other.close()
    data.close()
    assert model._RESIDENT.words == resident  # closing gives the memory back


def test_a_word_table_too_large_for_memory_is_asked_each_time(tmp_path, monkeypatch):
    monkeypatch.setattr(model, "WORDS_IN_MEMORY", 3)
    resident = model._RESIDENT.words
    data = FilterData(tmp_path / "f.sqlite")
    data.learn("id:1", {"a", "b"}, JUNK)
    assert data.counts({"a"}) == {"a": (1, 0)}
    assert data._words is not None
    data.learn("id:2", {"c", "d"}, HAM)  # grown past the bound: no longer held
    assert data._words is None
    assert data.counts({"a", "d"}) == {"a": (1, 0), "d": (0, 1)}
    assert data._words is None
    assert model._RESIDENT.words == resident
    data.close()


def test_evidence_is_totals_list_match_and_correspondent_at_once(tmp_path):
    data = FilterData(tmp_path / "f.sqlite")
    assert FilterData(tmp_path / "none.sqlite").evidence(["a@b.example"]) == (0, 0, None, None)
    data.learn("id:1", {"a"}, JUNK)
    data.learn("id:2", {"a"}, JUNK)
    data.learn("id:3", {"b"}, HAM)
    data.set_listed("example.org", "allow")
    data.set_listed("sub.example.org", "block")
    data.set_listed("x@example.net", "allow")
    data.add_correspondents(["Pal@Friends.example", "x@example.net"])
    senders = ["x@sub.example.org", "pal@friends.example", "x@example.net"]
    # block wins over allow; the first known correspondent among the senders
    assert data.evidence(senders) == (2, 1, ("block", "sub.example.org"), "pal@friends.example")
    assert data.evidence(senders) == (
        *data.totals(),
        data.list_match(senders),
        data.known_correspondent(senders),
    )
    assert data.evidence(["X@Example.NET"]) == (2, 1, ("allow", "x@example.net"), "x@example.net")
    assert data.evidence(["", "nobody@else.example"]) == (2, 1, None, None)


def test_message_identity_is_the_message_id_else_a_digest():
    assert message_identity(b"Message-ID: <A@B>\r\n\r\nx") == "id:<a@b>"
    assert message_identity(b"Subject: x\r\n\r\nx").startswith("sha:")


def test_dns_list_names_and_codes():
    assert reversed_name("192.0.2.99") == "99.2.0.192"
    assert reversed_name("2001:db8::1").startswith("1.0.0.0.") and reversed_name("x") is None
    default = DnsList.from_config({"zone": "bl.example"})
    assert default.counts("127.0.0.2") and not default.counts("127.0.0.1")
    assert not default.counts("127.255.255.254") and not default.counts("10.0.0.2")
    coded = DnsList.from_config({"zone": "bl.example", "codes": ["127.0.0.4-127.0.0.7"]})
    assert coded.counts("127.0.0.5") and not coded.counts("127.0.0.2")


def test_junk_config_is_checked_key_by_key(tmp_path):
    import pytest

    from mailsuite.config import ConfigError, config_from_dict

    def load(junk):
        return config_from_dict({"junk": junk}, base=tmp_path)

    assert load({}).junk.enabled is True
    for junk, key in (
        ({"dnsbl": [{"zone": "bl.example", "weigth": 1}]}, "junk.dnsbl[0].weigth"),
        ({"dnsbl": [{"zone": "bl.example", "action": "drop"}]}, "junk.dnsbl[0].action"),
        ({"dnswl": [{"zone": "wl.example", "codes": ["127.0.0.x"]}]}, "junk.dnswl[0].codes[0]"),
        ({"domain_lists": [{"weight": 1}]}, "junk.domain_lists[0].zone"),
        ({"junk_score": 6.0, "reject_score": 5.0}, "junk.reject_score"),
        ({"rspamd": "127.0.0.1:11333"}, "junk.rspamd"),
    ):
        with pytest.raises(ConfigError) as err:
            load(junk)
        assert err.value.key == key


HEADERS = [
    b"From: a@b.example\r\nSubject: hi\r\n\r\n",
    b"Received: from x\r\n\tfrom y; to z\r\nSUBJECT : Folded\r\n words\r\nfrom:\r\n  c@d.example\r\n\r\n",
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"
    b"Content-Transfer-Encoding: (c) Quoted-Printable\r\n\r\n",
    b"Content-Type: text/plain;\n charset*0=utf; charset*1=-8\nContent-Transfer-Encoding: x y\n"
    b"Content-Transfer-Encoding: BASE64\n\n",
    b"Content-Type: bogus\r\n\r\n",
    b"Content-Type: text/\r\nContent-Transfer-Encoding: base64\r\n\r\n",
    b'content-type : TEXT/HTML; CHARSET="utf-8"\r\n\r\n',
    b"Content-Type: application/pdf; name=x.pdf\r\n\r\n",
    b"Content-Type: message/rfc822\r\n\r\nSubject: inner\r\n\r\n",
    b"Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nx\r\n--b--\r\n",
    b"X-Other: 1\r\nTo: e@f.example\r\nCc: g@h.example\r\nAuthentication-Results: mx; dmarc=fail\r\n\r\n",
    b"Subject: no body",
]


def test_the_header_read_tells_what_the_mime_parser_does():
    """message_head reads only the fields judging needs, and a one-part message's type,
    parameters and transfer encoding without the MIME parser: the same as its tree says."""
    wanted = {b"subject", b"from", b"to", b"cc", b"content-type", b"authentication-results"}
    for raw in HEADERS:
        end, head = tokens_module.message_head(raw + b"body words here\r\n")
        full = parse_message(to_wire((raw + b"body words here\r\n")[:end]))
        assert end == header_end(raw + b"body words here\r\n")
        assert (head.ctype, head.csubtype) == (full.ctype, full.csubtype), raw
        assert head.transfer_encoding == full.transfer_encoding, raw
        assert head.param("charset") == full.param("charset") and head.param("name") == full.param(
            "name"
        )
        assert (head.is_multipart, head.is_message) == (full.is_multipart, full.is_message)
        assert [(n, unfold(v).rstrip(b"\r\n")) for n, v in head.fields if n in wanted] == [
            (n, unfold(v).rstrip(b"\r\n")) for n, v in full.fields if n in wanted
        ], raw


def test_a_plain_from_reads_as_the_address_parser_reads_it():
    values = [
        b" carol@example.net\r\n",
        b" Carol Jones <carol.jones+x@mail.example.net>\r\n",
        b" <a@b.example>\r\n",
        b" a@b.example>\r\n",
        b" <a@b.example\r\n",
        b' "Q, R" <a@b.example>\r\n',
        b" a@b.example, d@e.example\r\n",
        b" a..b@c.example\r\n",
        b" a@b.example (comment)\r\n",
        b" Jo\r\n <a@b.example>\r\n",
        b" G: a@b.example;\r\n",
        b" a@[192.0.2.1]\r\n",
        b" =?utf-8?q?J=C3=B6?= <a@b.example>\r\n",
        b" a@b.example",
    ]
    for value in values:
        parsed = parse_addresses(value) or []
        expected = [f"{m[2].decode()}@{m[3].decode()}" for m in parsed if m[2] and m[3]]
        assert author_addresses([(b"from", b"From:" + value)]) == expected, value
