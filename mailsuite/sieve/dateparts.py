"""RFC 5260 §4.2 date parts of a date-time, and the Date-style header values they come from."""

from __future__ import annotations

import email.utils
import re
import threading
import time
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

_MJD_EPOCH = date(1858, 11, 17)
_ZONE = re.compile(r"([+-])([0-9]{2})([0-9]{2})\Z")


class _LocalZone:
    """The machine's zone as a fixed offset, looked up again when the minute changes: finding
    it (datetime.astimezone() with no zone: a stat of /etc/localtime and a conversion) cost
    more than the rest of a short filter, and offsets only ever change on a whole minute."""

    def __init__(self):
        self._minute = -1
        self._zone: tzinfo = UTC
        self._lock = threading.Lock()

    def now(self) -> datetime:
        stamp = time.time()
        minute = int(stamp // 60)
        with self._lock:
            if minute != self._minute:
                self._zone = datetime.fromtimestamp(stamp).astimezone().tzinfo or UTC
                self._minute = minute
            zone = self._zone
        return datetime.fromtimestamp(stamp, zone)


_local_zone = _LocalZone()


def local_now() -> datetime:
    """Now in the machine's local zone (RFC 5260 §4.2's "local" zone, the one a delivery's
    Sieve run sees); the same as datetime.now().astimezone()."""
    return _local_zone.now()


def parse_zone(text: str) -> timezone | None:
    """ "+hhmm" / "-hhmm" (RFC 5260 §4.1.1 :zone)."""
    m = _ZONE.match(text.strip())
    if m is None:
        return None
    minutes = int(m.group(2)) * 60 + int(m.group(3))
    if minutes >= 24 * 60:
        return None
    return timezone(timedelta(minutes=-minutes if m.group(1) == "-" else minutes))


def parse_date_value(value: str) -> datetime | None:
    """A Date: header value as an aware datetime in its own zone; None when it is not one."""
    try:
        parsed = email.utils.parsedate_tz(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed is None:
        return None
    try:
        offset = parsed[9] or 0
        tz = timezone(timedelta(seconds=offset))
        return datetime(*parsed[:6], tzinfo=tz)
    except (ValueError, OverflowError):
        return None


def part(moment: datetime, name: str) -> str | None:
    name = name.lower()
    if name == "year":
        return f"{moment.year:04d}"
    if name == "month":
        return f"{moment.month:02d}"
    if name == "day":
        return f"{moment.day:02d}"
    if name == "date":
        return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
    if name == "julian":
        return str((moment.date() - _MJD_EPOCH).days)
    if name == "hour":
        return f"{moment.hour:02d}"
    if name == "minute":
        return f"{moment.minute:02d}"
    if name == "second":
        return f"{moment.second:02d}"
    if name == "time":
        return f"{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}"
    if name == "iso8601":
        z = _zone(moment)
        return moment.strftime("%Y-%m-%dT%H:%M:%S") + f"{z[:3]}:{z[3:]}"
    if name == "std11":
        return email.utils.format_datetime(moment)
    if name == "zone":
        return _zone(moment)
    if name == "weekday":
        return str((moment.weekday() + 1) % 7)  # 0 = Sunday
    return None


def _zone(moment: datetime) -> str:
    offset = moment.utcoffset() or timedelta()
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    minutes = abs(minutes)
    return f"{sign}{minutes // 60:02d}{minutes % 60:02d}"
