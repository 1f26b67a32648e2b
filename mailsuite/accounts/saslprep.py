"""SASLprep (RFC 4013), the stringprep profile SCRAM applies to user names and passwords
(RFC 5802 §2.2), built from the standard library's Unicode 3.2 tables: `stringprep` for the
mapping, prohibition and bidirectional tables and `unicodedata.ucd_3_2_0` for NFKC, which is the
Unicode version stringprep is defined against (RFC 3454 §6)."""

from __future__ import annotations

import stringprep
import unicodedata

_PROHIBITED = (
    stringprep.in_table_c12,  # non-ASCII space
    stringprep.in_table_c21,  # ASCII control
    stringprep.in_table_c22,  # non-ASCII control
    stringprep.in_table_c3,  # private use
    stringprep.in_table_c4,  # non-character code points
    stringprep.in_table_c5,  # surrogates
    stringprep.in_table_c6,  # inappropriate for plain text
    stringprep.in_table_c7,  # inappropriate for canonical representation
    stringprep.in_table_c8,  # change display properties or deprecated
    stringprep.in_table_c9,  # tagging characters
)


class SaslprepError(ValueError):
    """The string holds a character SASLprep prohibits."""


def saslprep(text: str, *, stored: bool = False) -> str:
    """`text` prepared; raises SaslprepError.  `stored` refuses unassigned code points (RFC 4013
    §2.5, for strings kept in a database); a query (what a client sends, and what a client
    derives its keys from) lets them through unchanged."""
    # RFC 4013 §2.1: non-ASCII spaces map to SPACE, "commonly mapped to nothing" (B.1) vanish.
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c for c in text if not stringprep.in_table_b1(c)
    )
    # RFC 4013 §2.2: Unicode normalization form KC.
    prepared = unicodedata.ucd_3_2_0.normalize("NFKC", mapped)
    for c in prepared:
        # RFC 4013 §2.3 prohibited output, §2.5 unassigned code points for stored strings.
        if any(table(c) for table in _PROHIBITED):
            raise SaslprepError(f"prohibited character U+{ord(c):04X}")
        if stored and stringprep.in_table_a1(c):
            raise SaslprepError(f"unassigned code point U+{ord(c):04X}")
    # RFC 4013 §2.4, RFC 3454 §6: right-to-left text is wholly so, and begins and ends so.
    if any(stringprep.in_table_d1(c) for c in prepared):
        if any(stringprep.in_table_d2(c) for c in prepared):
            raise SaslprepError("mixed bidirectional text")
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            raise SaslprepError("right-to-left text must begin and end right-to-left")
    return prepared
