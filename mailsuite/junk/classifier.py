"""Word statistics to a junk probability: Robinson's per-word probability and Fisher's
chi-square combining, as SpamBayes does it.  Pure functions, no storage.

Robinson's f(w) pulls words seen a few times toward "unknown" (0.5) so that one sighting
never decides; Fisher's method asks how unlikely the words' probabilities would be if the
message were ham, and if it were junk, and weighs the two: a message with strong evidence
both ways comes out near 0.5 ("unsure"), which the filter files in INBOX.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from operator import itemgetter

# Robinson's s (strength of the prior) and x (the prior for a word never seen).
PRIOR_STRENGTH = 0.45
PRIOR = 0.5
# Words nearer to 0.5 than this are left out: they only add noise.
MIN_STRENGTH = 0.1
# At most this many of the most decided words are combined.
MAX_CLUES = 150


@dataclass(frozen=True)
class Judgement:
    probability: float  # 0 (ham) … 1 (junk); 0.5 when nothing decides
    clues: tuple[tuple[str, float], ...]  # (token, f(w)), strongest first
    trained: bool  # False: too little training to judge, probability is 0.5


def word_probability(junk: int, ham: int, n_junk: int, n_ham: int) -> float:
    """Robinson's f(w) for a word seen in `junk` of `n_junk` junk and `ham` of `n_ham` ham
    messages."""
    junk_ratio = junk / n_junk if n_junk else 0.0
    ham_ratio = ham / n_ham if n_ham else 0.0
    if junk_ratio + ham_ratio == 0:
        return PRIOR
    p = junk_ratio / (junk_ratio + ham_ratio)
    n = junk + ham
    return (PRIOR_STRENGTH * PRIOR + n * p) / (PRIOR_STRENGTH + n)


def chi2_q(x2: float, dof: int) -> float:
    """P(chi² with `dof` (even) degrees of freedom >= x2): the series for even dof."""
    m = x2 / 2.0
    term = math.exp(-m)
    total = term
    for i in range(1, dof // 2):
        term *= m / i
        if total + term == total and (term == 0.0 or i > m):
            # Past its peak (i > m) each term is smaller than the last: none of the rest can
            # change the sum any more, added one by one as here.
            break
        total += term
    return min(total, 1.0)


def combine(probabilities: list[float]) -> float:
    """Fisher-Robinson combining of word probabilities into one (0.5 for none)."""
    return _combine_logs(
        len(probabilities),
        sum(math.log(p) for p in probabilities),
        sum(math.log(1.0 - p) for p in probabilities),
    )


def _combine_logs(n: int, ln_ham: float, ln_junk: float) -> float:
    """Fisher-Robinson combining from the sums of ln f and of ln(1 - f) over n words."""
    if not n:
        return PRIOR
    junkiness = 1.0 - _chi2_q_unless_negligible(-2.0 * ln_junk, 2 * n)
    hamminess = 1.0 - _chi2_q_unless_negligible(-2.0 * ln_ham, 2 * n)
    return (junkiness - hamminess + 1.0) / 2.0


def _chi2_q_unless_negligible(x2: float, dof: int) -> float:
    """chi2_q(x2, dof), or 0.0 when it is too small to change 1.0 - it (below 2**-54, 1.0 -
    q rounds to 1.0): told from a bound in two library calls, where the series would take
    a Python step per word of a message with clear evidence.  The series' terms e^-m m^i/i!
    grow up to i = m; when m is past the last, the sum is at most dof/2 times that last."""
    m = x2 / 2.0
    k = dof // 2
    if m >= k and math.log(k) - m + (k - 1) * math.log(m) - math.lgamma(k) < _NEGLIGIBLE:
        return 0.0
    return chi2_q(x2, dof)


# ln 2**-54 is -37.4: with margin for the rounding of the bound itself.
_NEGLIGIBLE = -40.0


UNTRAINED = Judgement(PRIOR, (), False)

# A clue: (strength |f - 0.5| as clamped, (token, f), ln f, ln(1 - f)).  The logarithms are
# what combining sums: worked out once per word, not once per message.
Clue = tuple[float, tuple[str, float], float, float]


def clue(token: str, junk: int, ham: int, n_junk: int, n_ham: int) -> Clue | None:
    """The clue a word seen in `junk` junk and `ham` ham messages gives (f(w) clamped to
    0.0001 … 0.9999), None when it is too near 0.5 to count."""
    junk_ratio = junk / n_junk if n_junk else 0.0
    ham_ratio = ham / n_ham if n_ham else 0.0
    if junk_ratio + ham_ratio == 0:
        return None  # f is the prior itself: never a clue
    n = junk + ham
    f = (PRIOR_STRENGTH * PRIOR + n * (junk_ratio / (junk_ratio + ham_ratio))) / (
        PRIOR_STRENGTH + n
    )
    if abs(f - PRIOR) < MIN_STRENGTH:
        return None
    f = min(max(f, 0.0001), 0.9999)
    return (abs(f - PRIOR), (token, f), math.log(f), math.log(1.0 - f))


def judge(
    counts: dict[str, tuple[int, int]], n_junk: int, n_ham: int, min_trained: int
) -> Judgement:
    """The probability that a message is junk from the (junk, ham) counts of its tokens.

    Until both classes have `min_trained` messages the answer is 0.5 (untrained), so a new
    account's filter files everything in INBOX rather than guessing."""
    if n_junk < min_trained or n_ham < min_trained:
        return UNTRAINED
    found = (clue(token, junk, ham, n_junk, n_ham) for token, (junk, ham) in counts.items())
    return from_clues([c for c in found if c is not None])


def from_clues(clues: list[Clue]) -> Judgement:
    """The judgement of a trained filter from its clues, in the order the words came: the
    MAX_CLUES strongest (as clamped; among equals the earlier, a stable sort) combined."""
    clues.sort(key=_STRENGTH, reverse=True)
    del clues[MAX_CLUES:]
    # C-level loops (itemgetter), the sums added in the same order as one by one
    return Judgement(
        _combine_logs(len(clues), sum(map(_LN_F, clues)), sum(map(_LN_NOT_F, clues))),
        tuple(map(_TOKEN_F, clues)),
        True,
    )


_STRENGTH, _TOKEN_F, _LN_F, _LN_NOT_F = (itemgetter(i) for i in range(4))
