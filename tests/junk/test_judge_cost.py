"""The filter's shortcuts for speed give the answers of the long way: DMARC is still read
from our own Authentication-Results when nothing else needs the header parsed,
combining without the chi-square series where it cannot matter gives the same probability,
the words of ASCII text are stripped of the same punctuation with its ASCII part alone, and a
header value without folding is unfolded without the regular expression."""

from __future__ import annotations

import math
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mailsuite.config import config_from_dict
from mailsuite.delivery import Envelope, Recipient
from mailsuite.junk import classifier, tokens
from mailsuite.message import headers
from mailsuite.services import Services
from tests.junk.corpus import make_message

USER = "alice@example.test"


def _filter(tmp_path: Path):
    config = config_from_dict(
        {"data_dir": str(tmp_path / "data"), "allow_root": True, "hostname": "mx.example.test"},
        base=tmp_path,
    )
    services = Services.create(config, with_tls=False)
    services.accounts.add_user(USER, "a-password")
    services.store.create_mailbox(USER)
    return services.junk


def _verdict(junk, raw: bytes):
    envelope = Envelope("x@example.org", [Recipient(USER)], client_ip="192.0.2.1")
    return junk.judge(envelope, raw, [USER])[USER]


def test_dmarc_failure_in_our_results_counts_for_an_untrained_account(tmp_path):
    junk = _filter(tmp_path)
    try:
        raw = make_message("ham", 1)
        ours = b"Authentication-Results: mx.example.test; spf=none; dmarc=fail header.from=x\r\n"
        theirs = b"Authentication-Results: mx.other.example; dmarc=fail header.from=x\r\n"
        assert "DMARC fail (+3.0)" in _verdict(junk, ours + raw).reasons
        # RFC 8601 §5: a field naming another authserv-id is not ours to believe
        assert not any("DMARC" in r for r in _verdict(junk, theirs + raw).reasons)
        assert _verdict(junk, raw).reasons == ("words untrained",)
        folded = b"AUTHENTICATION-RESULTS: mx.example.test;\r\n\tdmarc=fail header.from=x\r\n"
        assert "DMARC fail (+3.0)" in _verdict(junk, folded + raw).reasons
    finally:
        junk.close()


def _combined_by_series(n: int, ln_ham: float, ln_junk: float) -> float:
    junkiness = 1.0 - classifier.chi2_q(-2.0 * ln_junk, 2 * n)
    hamminess = 1.0 - classifier.chi2_q(-2.0 * ln_ham, 2 * n)
    return (junkiness - hamminess + 1.0) / 2.0


@given(
    st.integers(1, classifier.MAX_CLUES),
    st.floats(0.0, 1.0),
    st.floats(0.0, 1.0),
)
def test_combining_equals_the_whole_series(n, ham_share, junk_share):
    # each word's ln f and ln(1 - f) lie between ln 0.0001 and ln 0.9999 (the clamp)
    low, high = math.log(0.0001), math.log(0.9999)
    ln_ham = n * (high + (low - high) * ham_share)
    ln_junk = n * (high + (low - high) * junk_share)
    assert classifier._combine_logs(n, ln_ham, ln_junk) == _combined_by_series(n, ln_ham, ln_junk)


# Letters, white space and every punctuation character the words are stripped of (the
# non-ASCII ones too), so that chunks begin and end with them in every mix.
_TEXT = st.text(alphabet=st.sampled_from("abcXYZé1 \t\n" + tokens._PUNCTUATION), max_size=80)


@given(_TEXT)
def test_words_are_stripped_as_by_the_whole_punctuation(text):
    long_way = {
        w if len(w) <= tokens.MAX_WORD else f"skip:{w[0]}{len(w) // 10 * 10}"
        for chunk in text.split()
        if len(w := chunk.strip(tokens._PUNCTUATION)) >= tokens.MIN_WORD
    }
    assert tokens._words(text) == long_way


@given(st.binary().map(lambda b: bytes(b"ab \t\r\n:"[x % 7] for x in b)))
def test_unfolding_without_the_regular_expression_where_nothing_is_folded(value):
    assert headers.unfold(value) == headers._UNFOLD_RE.sub(b"", value)
