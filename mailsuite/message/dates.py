"""The Date: header field (RFC 5322 §3.3) as a calendar day and a UTC timestamp."""

from __future__ import annotations

import calendar
import re

from mailsuite.message.params import strip_comments

__all__ = ["parse_date_header"]

_DATE_RE = re.compile(
    r"\s*(?:([A-Za-z]+)\s*,\s*)?(\d{1,2})\s+([A-Za-z]+)\s+(\d{2,4})\s+"
    r"(\d{1,2})[:.](\d{1,2})(?:[:.](\d{1,2}))?(?:\s+(\S+))?"
)
_MONTHS3 = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_ZONES = {
    "ut": 0,
    "gmt": 0,
    "z": 0,
    "est": -5,
    "edt": -4,
    "cst": -6,
    "cdt": -5,
    "mst": -7,
    "mdt": -6,
    "pst": -8,
    "pdt": -7,
}


def parse_date_header(value: bytes | None) -> tuple[tuple[int, int, int], float] | None:
    """A Date: value as ((year, month, day) as written, UTC seconds), or None when invalid.

    As strict as Dovecot's parser, so SEARCH SENT* and SORT DATE agree with it: an optional
    three-letter weekday, day, month name, 2- or 4-digit year (RFC 5322 §4.3), hh:mm[:ss] in
    range, an optional zone (numeric, or a name; unknown names count as +0000).
    """
    if value is None:
        return None
    m = _DATE_RE.match(strip_comments(value.decode("latin-1")))
    if not m:
        return None
    wday, day, mon, year, hh, mm, ss, zone = m.groups()
    if wday is not None and len(wday) != 3:
        return None
    month = _MONTHS3.get(mon[:3].lower())
    if month is None:
        return None
    y = int(year)
    if len(year) == 2:
        y += 2000 if y < 50 else 1900
    elif len(year) == 3:
        y += 1900
    d, h, mi, se = int(day), int(hh), int(mm), int(ss or 0)
    if not (1 <= d <= calendar.monthrange(y, month)[1] and h < 24 and mi < 60 and se <= 60):
        return None
    offset = 0
    if zone:
        z = zone.lower()
        if z[0] in "+-" and z[1:5].isdigit() and len(z) >= 5:
            offset = (int(z[1:3]) * 3600 + int(z[3:5]) * 60) * (-1 if z[0] == "-" else 1)
        else:
            offset = _ZONES.get(z, 0) * 3600
    stamp = calendar.timegm((y, month, d, h, mi, se, 0, 0, 0)) - offset
    return (y, month, d), float(stamp)
