"""Fluent Bit's time formats: its ``strptime`` dialect plus ``%L``, compiled once per format.

A ``Time_Format`` is split at its first ``%L`` as Fluent Bit does: the part before is parsed
with the strptime dialect, then up to 9 fraction digits, then the part after (``%z``, ``Z``,
``%Y``...). A format without a year (old syslog: ``%b %d %H:%M:%S``) gets the current year, and
a format without month/day gets today's. The conversions follow Fluent Bit's ``flb_strptime.c``
(OpenBSD's): numbers are read greedily up to the digits their range allows, a space in the
format matches any run of white space, text after the format is ignored, ``%z`` accepts ``Z``,
``+hh``, ``+hhmm``, ``+hh:mm``, ``UT``/``UTC``/``GMT`` and the US zone names, ``%Z`` the zone
abbreviations of Fluent Bit's table.

Speed: every compiled format caches the epoch seconds of each distinct text before its
fraction, so a record costs a slice and a dict lookup; the Docker/CRI format
(``%Y-%m-%dT%H:%M:%S.%L`` with or without ``%z``) goes through :func:`rfc3339_ns`, which slices
the text and caches per ``YYYY-MM-DDTHH:MM:SS`` prefix. Nothing calls ``strptime`` per record.
"""

from __future__ import annotations

import time as _time
from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_NS = 1_000_000_000
_CACHE_MAX = 4096
_MAX_TIME_TEXT = 1024  # longer time values are not times

_SPACE = " \t\n\v\f\r"
_DIGITS = "0123456789"

_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august",
           "september", "october", "november", "december")

_H = 3600
# %Z: Fluent Bit's table of zone abbreviations (flb_strptime.c), longest names first so that
# "AKST" is not read as "A".
_ZONE_NAMES: dict[str, int] = {
    "GMT": 0, "UTC": 0, "Z": 0, "UT": 0,
    "EST": -5 * _H, "EDT": -4 * _H, "CST": -6 * _H, "CDT": -5 * _H, "MST": -7 * _H,
    "MDT": -6 * _H, "PST": -8 * _H, "PDT": -7 * _H, "AKST": -9 * _H, "AKDT": -8 * _H,
    "HST": -10 * _H, "HADT": -9 * _H, "AST": -4 * _H, "ADT": -3 * _H, "NST": -12600,
    "NDT": -9000, "WET": 0, "WEST": _H, "CET": _H, "CEST": 2 * _H, "EET": 2 * _H,
    "EEST": 3 * _H, "MSK": 3 * _H, "ART": -3 * _H, "BRT": -3 * _H, "BRST": -2 * _H,
    "CLT": -4 * _H, "CLST": -3 * _H, "AEST": 10 * _H, "AEDT": 11 * _H, "ACST": 34200,
    "ACDT": 37800, "AWST": 8 * _H, "NZST": 12 * _H, "NZDT": 13 * _H, "JST": 9 * _H,
    "KST": 9 * _H, "SGT": 8 * _H, "IST": 19800, "GST": 4 * _H, "ICT": 7 * _H, "WIB": 7 * _H,
    "WITA": 8 * _H, "WIT": 9 * _H, "MYT": 8 * _H, "BDT": 6 * _H, "NPT": 20700,
    "WAT": _H, "CAT": 2 * _H, "EAT": 3 * _H, "SAST": 2 * _H,
}
for _i, _c in enumerate("ABCDEFGHIKLM"):
    _ZONE_NAMES[_c] = (_i + 1) * _H
for _i, _c in enumerate("NOPQRSTUVWXY"):
    _ZONE_NAMES[_c] = -(_i + 1) * _H
# Fluent Bit scans its table in order and takes the first name followed by a non-alphanumeric
# character; sorting by length reproduces that for every name in the table.
_ZONE_ORDER = sorted(_ZONE_NAMES, key=len, reverse=True)
# %z's RFC 822 names: EST CST MST PST (-5..-8), EDT CDT MDT PDT (-4..-7).
_US_ZONES = {"EST": -5 * _H, "CST": -6 * _H, "MST": -7 * _H, "PST": -8 * _H,
             "EDT": -4 * _H, "CDT": -5 * _H, "MDT": -6 * _H, "PDT": -7 * _H}


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (month 1-12; day may overflow)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def _timegm(year: int, mon0: int, mday: int, hour: int, minute: int, sec: int) -> int:
    """``timegm`` of a ``struct tm`` (year in full, month 0-11), normalizing overflows."""
    return ((days_from_civil(year, mon0 + 1, 1) + mday - 1) * 86400
            + hour * 3600 + minute * 60 + sec)


def parse_offset(text: str) -> int:
    """``Time_Offset`` (Fluent Bit's ``flb_parser_tzone_offset``): ``Z``, ``+hhmm`` or
    ``+hh:mm`` -> seconds east of UTC; ValueError otherwise."""
    s = text.strip()
    if s.startswith("Z"):
        return 0
    if len(s) < 5 or s[0] not in "+-":
        raise ValueError(f"invalid time offset '{text}' (expected +hhmm, -hh:mm or Z)")
    body = s[1:]
    digits = body[:2] + (body[3:5] if len(body) == 5 and body[2] == ":" else body[2:4])
    if len(digits) != 4 or not digits.isdigit() or not digits.isascii():
        raise ValueError(f"invalid time offset '{text}' (expected +hhmm, -hh:mm or Z)")
    hour, minute = int(digits[:2]), int(digits[2:])
    if hour > 59 or minute > 59:
        raise ValueError(f"invalid time offset '{text}'")
    value = hour * 3600 + minute * 60
    return -value if s[0] == "-" else value


# --- the strptime dialect ---------------------------------------------------------------------

class _TM:
    """The fields a conversion sets (``struct tm`` plus Fluent Bit's gmtoff)."""

    __slots__ = ("century", "epoch", "fields", "gmtoff", "hour", "mday", "min", "mon",
                 "relyear", "sec", "wday", "yday", "year", "zone")

    def __init__(self) -> None:
        self.year = 1900
        self.mon = 0
        self.mday = 0
        self.hour = 0
        self.min = 0
        self.sec = 0
        self.yday = 0
        self.wday = 0
        self.gmtoff = 0
        self.zone = False  # a zone was read from the text
        self.epoch: int | None = None
        self.century = 1900
        self.relyear = -1
        self.fields = 0


_F_MON, _F_MDAY, _F_WDAY, _F_YDAY, _F_YEAR = 1, 2, 4, 8, 16


def _num(s: str, i: int, lo: int, hi: int) -> tuple[int, int]:
    """``_conv_num``: greedy digits bounded by ``hi``'s width; (value, new index) or (-1, i)."""
    n = len(s)
    if i >= n or s[i] not in _DIGITS:
        return -1, i
    result = 0
    rulim = hi
    while True:
        result = result * 10 + (ord(s[i]) - 48)
        i += 1
        rulim //= 10
        if not (result * 10 <= hi and rulim and i < n and s[i] in _DIGITS):
            break
    if result < lo or result > hi:
        return -1, i
    return result, i


def _name(s: str, i: int, names: tuple[str, ...]) -> tuple[int, int]:
    """Full then abbreviated (3-letter) name, case-insensitively, for each entry in order."""
    low = s[i:i + 12].lower()
    for k, full in enumerate(names):
        if low.startswith(full):
            return k, i + len(full)
        if low.startswith(full[:3]):
            return k, i + 3
    return -1, i


_Step = tuple[str, str]


def _compile_steps(fmt: str) -> list[_Step]:
    """A format -> steps; ValueError for a conversion the dialect does not have."""
    steps: list[_Step] = []
    i, n = 0, len(fmt)
    while i < n:
        c = fmt[i]
        if c in _SPACE:
            steps.append(("ws", ""))
            i += 1
            continue
        if c != "%":
            steps.append(("lit", c))
            i += 1
            continue
        i += 1
        while i < n and fmt[i] in "EO":
            i += 1
        if i >= n:
            raise ValueError(f"time format '{fmt}' ends with '%'")
        conv = fmt[i]
        i += 1
        if conv == "%":
            steps.append(("lit", "%"))
        elif conv in _EXPAND:
            steps.extend(_compile_steps(_EXPAND[conv]))
        elif conv in _CONVERSIONS:
            steps.append(("conv", conv))
        else:
            raise ValueError(f"time format '{fmt}': unknown conversion '%{conv}'")
    return steps


# Composite conversions, as the C locale spells them.
_EXPAND = {"D": "%m/%d/%y", "F": "%Y-%m-%d", "R": "%H:%M", "r": "%I:%M:%S %p",
           "T": "%H:%M:%S", "c": "%a %b %e %H:%M:%S %Y", "x": "%m/%d/%y", "X": "%H:%M:%S"}
_CONVERSIONS = frozenset("aAbBhCdekHlIjMmpSsUWwuGgVYyZznt")
# Numeric conversions: (lowest, highest, field of _TM or "" to only check, its flag, added to
# the value). %Y also clears relyear; %e may start with a space.
_NUMERIC: dict[str, tuple[int, int, str, int, int]] = {
    "d": (1, 31, "mday", _F_MDAY, 0), "e": (1, 31, "mday", _F_MDAY, 0),
    "H": (0, 23, "hour", 0, 0), "k": (0, 23, "hour", 0, 0),
    "I": (1, 12, "hour", 0, 0), "l": (1, 12, "hour", 0, 0),
    "M": (0, 59, "min", 0, 0), "S": (0, 60, "sec", 0, 0),
    "m": (1, 12, "mon", _F_MON, -1), "j": (1, 366, "yday", _F_YDAY, -1),
    "Y": (0, 9999, "year", _F_YEAR, 0), "y": (0, 99, "relyear", 0, 0),
    "w": (0, 6, "wday", _F_WDAY, 0),
    "U": (0, 53, "", 0, 0), "W": (0, 53, "", 0, 0), "V": (0, 53, "", 0, 0),
    "g": (0, 99, "", 0, 0),
}


def _run(s: str, i: int, steps: list[_Step], tm: _TM) -> int:
    """Apply ``steps`` to ``s`` from ``i``; the index after the match, or -1."""
    n = len(s)
    for kind, arg in steps:
        if kind == "ws":
            while i < n and s[i] in _SPACE:
                i += 1
            continue
        if i >= n:
            return -1
        if kind == "lit":
            if s[i] != arg:
                return -1
            i += 1
            continue
        c = arg
        spec = _NUMERIC.get(c)
        if spec is not None:
            lo, hi, attr, flag, delta = spec
            if c == "e" and s[i] in _SPACE:
                i += 1
            v, i = _num(s, i, lo, hi)
            if v < 0:
                return -1
            if attr:
                setattr(tm, attr, v + delta)
                tm.fields |= flag
            if c == "Y":
                tm.relyear = -1
        elif c in "bBh":
            v, i = _name(s, i, _MONTHS)
            if v < 0:
                return -1
            tm.mon = v
            tm.fields |= _F_MON
        elif c in "aA":
            v, i = _name(s, i, _DAYS)
            if v < 0:
                return -1
            tm.wday = v
            tm.fields |= _F_WDAY
        elif c == "p":
            word = s[i:i + 2].upper()
            if word == "AM":
                if tm.hour > 12:
                    return -1
                if tm.hour == 12:
                    tm.hour = 0
            elif word == "PM":
                if tm.hour > 12:
                    return -1
                if tm.hour < 12:
                    tm.hour += 12
            else:
                return -1
            i += 2
        elif c == "C":
            v, i = _num(s, i, 0, 99)
            if v < 0:
                return -1
            tm.century = v * 100
        elif c == "s":
            j = i
            while j < n and s[j] in _DIGITS and j - i < 19:
                j += 1
            if j == i:
                return -1
            epoch = int(s[i:j])
            i = j
            tm.epoch = epoch
            days = epoch // 86400
            t = _time.gmtime(epoch) if days < 2_900_000 else None
            if t is None:
                return -1
            tm.year, tm.mon, tm.mday = t.tm_year, t.tm_mon - 1, t.tm_mday
            tm.hour, tm.min, tm.sec = t.tm_hour, t.tm_min, t.tm_sec
            tm.gmtoff = 0
            tm.fields = 0xFFFF
        elif c == "u":
            v, i = _num(s, i, 1, 7)
            if v < 0:
                return -1
            tm.wday = v % 7
            tm.fields |= _F_WDAY
        elif c == "G":
            i += 1
            while i < n and s[i] in _DIGITS:
                i += 1
        elif c in "nt":
            while i < n and s[i] in _SPACE:
                i += 1
        elif c == "z":
            i = _zone_z(s, i, tm)
            if i < 0:
                return -1
        elif c == "Z":
            i = _zone_name(s, i, tm)
            if i < 0:
                return -1
    if tm.relyear != -1:
        if tm.century == 1900:
            tm.year = tm.relyear + (2000 if tm.relyear <= 68 else 1900)
        else:
            tm.year = tm.relyear + tm.century
        tm.fields |= _F_YEAR
    if tm.fields & _F_YEAR and tm.fields & _F_YDAY and not tm.fields & _F_MON:
        # Month and day from the day of the year (strptime's "compute missing values").
        leap = tm.year % 4 == 0 and (tm.year % 100 != 0 or tm.year % 400 == 0)
        days = tm.yday
        mon = 0
        lengths = (31, 29 if leap else 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
        while mon < 12 and days >= lengths[mon]:
            days -= lengths[mon]
            mon += 1
        tm.mon = mon
        if not tm.fields & _F_MDAY:
            tm.mday = days + 1
    return i


def _zone_z(s: str, i: int, tm: _TM) -> int:
    n = len(s)
    while i < n and s[i] in _SPACE:
        i += 1
    if i >= n:
        return -1
    c = s[i]
    if c == "G":
        if s[i + 1:i + 3] != "MT":
            return -1
        tm.gmtoff, tm.zone = 0, True
        return i + 3
    if c == "U":
        if s[i + 1:i + 2] != "T":
            return -1
        i += 2
        if s[i:i + 1] == "C":
            i += 1
        tm.gmtoff, tm.zone = 0, True
        return i
    if c == "Z":
        tm.gmtoff, tm.zone = 0, True
        return i + 1
    if c in "+-":
        i += 1
        if not (s[i:i + 1].isdigit() and s[i + 1:i + 2].isdigit()) or not s[i:i + 2].isascii():
            return -1
        offs = int(s[i:i + 2]) * 3600
        i += 2
        if s[i:i + 1] == ":":
            i += 1
        if i < n and s[i] in _DIGITS:
            if not (i + 1 < n and s[i + 1] in _DIGITS):
                return -1
            offs += int(s[i:i + 2]) * 60
            i += 2
        tm.gmtoff, tm.zone = (-offs if c == "-" else offs), True
        return i
    name = s[i:i + 3].upper()
    if name in _US_ZONES:
        tm.gmtoff, tm.zone = _US_ZONES[name], True
        return i + 3
    return -1


def _zone_name(s: str, i: int, tm: _TM) -> int:
    up = s[i:i + 4].upper()
    for name in _ZONE_ORDER:
        if up.startswith(name):
            after = s[i + len(name):i + len(name) + 1]
            if not after.isalnum():
                tm.gmtoff, tm.zone = _ZONE_NAMES[name], True
                return i + len(name)
    return -1


# --- the compiled format -----------------------------------------------------------------------

class TimeFormat:
    """One ``Time_Format`` with its zone settings; call it with a time string.

    ``tf(text) -> (ns, error)``: ``ns`` since the epoch, or None with ``error`` explaining
    (only when ``Time_Strict`` is on: off, a partial match yields the fields read so far).
    """

    def __init__(self, fmt: str, *, offset: int = 0, zone: str | None = None,
                 system_tz: bool = False, strict: bool = True) -> None:
        self.fmt = fmt
        self.strict = strict
        self.offset = offset
        self.system_tz = system_tz
        self.zoneinfo: ZoneInfo | None = None
        if zone:
            try:
                self.zoneinfo = ZoneInfo(zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone '{zone}'") from None
        self.with_year = "%Y" in fmt or "%y" in fmt or "%s" in fmt
        self.with_tz = any(t in fmt for t in ("%z", "%Z", "%SZ", "%S.%LZ"))
        head, sep, tail = fmt.partition("%L")
        self.has_frac = bool(sep)
        self.head = _compile_steps(head)
        self.tail = _compile_steps(tail) if sep else []
        if not self.with_year:
            self.head = [("year", ""), ("ws", ""), *self.head]
        # The cache applies when the head ends with a literal character (its match then never
        # depends on what follows) and the tail only reads a zone.
        self._prefix_cache = (self.has_frac and bool(self.head) and self.head[-1][0] == "lit"
                              and all(k != "conv" or a in "zZ" for k, a in self.tail)
                              and not any(a in "sZz" for k, a in self.head if k == "conv"))
        self._klens: list[int] = []
        self._cache: dict[str, tuple[int, int]] = {}
        self._day = 0
        fast = fmt in ("%Y-%m-%dT%H:%M:%S.%L", "%Y-%m-%dT%H:%M:%S.%L%z")
        self._fast = fast and not system_tz and self.zoneinfo is None
        self._fast_zone = fmt.endswith("%z")

    def text_cache(self) -> dict[str, tuple[int, int]] | None:
        """The cache of whole texts already parsed (``text -> (ns, _)``), for callers that look
        a text up themselves before calling; None when this format does not cache whole texts
        that way (a fraction, or no year: those entries expire)."""
        if self.has_frac or not self.with_year or self._fast:
            return None
        return self._cache

    # zone-less wall clock -> epoch seconds
    def _to_epoch(self, tm: _TM) -> int:
        if tm.epoch is not None and not tm.zone:
            return tm.epoch - self.offset if not self.with_tz else tm.epoch
        if tm.zone or self.with_tz:
            return _timegm(tm.year, tm.mon, tm.mday, tm.hour, tm.min, tm.sec) - tm.gmtoff
        if self.zoneinfo is not None:
            try:
                dt = datetime(tm.year, tm.mon + 1, 1, tzinfo=self.zoneinfo)
                wall = _timegm(tm.year, tm.mon, tm.mday, tm.hour, tm.min, tm.sec)
                off = dt.utcoffset()
                guess = wall - (int(off.total_seconds()) if off else 0)
                local = datetime.fromtimestamp(guess, self.zoneinfo).utcoffset()
                return wall - (int(local.total_seconds()) if local else 0)
            except (ValueError, OverflowError, OSError):
                return _timegm(tm.year, tm.mon, tm.mday, tm.hour, tm.min, tm.sec)
        if self.system_tz:
            try:
                return int(_time.mktime((tm.year, tm.mon + 1, tm.mday, tm.hour, tm.min,
                                         tm.sec, 0, 0, -1)))
            except (OverflowError, ValueError):
                return _timegm(tm.year, tm.mon, tm.mday, tm.hour, tm.min, tm.sec)
        return _timegm(tm.year, tm.mon, tm.mday, tm.hour, tm.min, tm.sec) - self.offset

    def _today(self) -> tuple[int, int, int]:
        now = _time.time()
        if self.zoneinfo is not None:
            d = datetime.fromtimestamp(now, self.zoneinfo)
            return d.year, d.month - 1, d.day
        t = _time.localtime(now) if self.system_tz else _time.gmtime(now)
        return t.tm_year, t.tm_mon - 1, t.tm_mday

    def _new_tm(self) -> _TM:
        tm = _TM()
        if not self.with_year:
            tm.year, tm.mon, tm.mday = self._today()
        return tm

    def _run_head(self, s: str, tm: _TM) -> int:
        steps = self.head
        if steps and steps[0][0] == "year":
            steps = steps[1:]
            tm.fields |= _F_YEAR
        return _run(s, 0, steps, tm)

    def slow(self, s: str) -> tuple[int | None, str]:
        """The full parse, no cache: (ns, '') or (None, reason)."""
        if len(s) > _MAX_TIME_TEXT:
            return None, "time string length is too long"
        tm = self._new_tm()
        i = self._run_head(s, tm)
        if i < 0:
            if self.strict:
                return None, "cannot parse"
            return self._to_epoch(tm) * _NS, ""
        frac = 0
        if self.has_frac:
            j = i
            limit = min(len(s), i + 9)
            while j < limit and s[j] in _DIGITS:
                j += 1
            if j == i:
                if self.strict:
                    return None, "cannot parse %L"
                return self._to_epoch(tm) * _NS, ""
            frac = int(s[i:j].ljust(9, "0"))
            # The part after %L is parsed afresh (strptime re-initializes the zone).
            tm.gmtoff, tm.zone, tm.fields, tm.relyear, tm.century = 0, False, 0, -1, 1900
            if _run(s, j, self.tail, tm) < 0 and self.strict:
                return None, "cannot parse after %L"
        return self._to_epoch(tm) * _NS + frac, ""

    def __call__(self, s: str) -> tuple[int | None, str]:
        if self._fast:
            ns = _fast_docker(s, self._fast_zone, self.offset)
            if ns is not None:
                return ns, ""
        if not self.with_year:
            day = int(_time.time()) // 900  # zones are 15-minute multiples: "today" changes
            if day != self._day:
                self._day = day
                self._cache.clear()
        cache = self._cache
        if not self.has_frac:
            hit = cache.get(s)
            if hit is not None:
                return hit[0], ""
            ns, err = self.slow(s)
            if ns is not None:
                if len(cache) >= _CACHE_MAX:
                    cache.clear()
                cache[s] = (ns, 0)
            return ns, err
        if self._prefix_cache:
            # "...%S.%L[zone]": key = the text before the fraction.
            for klen in self._klens:
                hit = cache.get(s[:klen])
                if hit is None:
                    continue
                j = klen
                limit = min(len(s), j + 9)
                while j < limit and s[j] in _DIGITS:
                    j += 1
                if j == klen:
                    break
                frac = int(s[klen:j].ljust(9, "0"))
                if not self.tail:
                    return hit[0] + frac, ""
                tm = _TM()
                if _run(s, j, self.tail, tm) < 0:
                    break
                if tm.zone:
                    return hit[1] - tm.gmtoff * _NS + frac, ""
                return hit[0] + frac, ""
            else:
                tm = self._new_tm()
                i = self._run_head(s, tm)
                if i > 0:
                    if len(cache) >= _CACHE_MAX:
                        cache.clear()
                    wall = _timegm(tm.year, tm.mon, tm.mday, tm.hour, tm.min, tm.sec)
                    cache[s[:i]] = (self._to_epoch(tm) * _NS, wall * _NS)
                    if i not in self._klens and len(self._klens) < 8:
                        self._klens.append(i)
        return self.slow(s)


def compile_format(fmt: str, *, offset: int = 0, zone: str | None = None,
                   system_tz: bool = False, strict: bool = True) -> TimeFormat:
    """Compile ``fmt`` once; ValueError names what is wrong (unknown conversion or zone)."""
    return TimeFormat(fmt, offset=offset, zone=zone, system_tz=system_tz, strict=strict)


# --- Docker / CRI fast path --------------------------------------------------------------------

_sec_cache: dict[str, int] = {}


def _prefix_seconds(prefix: str) -> int:
    """Epoch seconds of a ``YYYY-MM-DDTHH:MM:SS`` prefix (wall clock, UTC); -1 if invalid."""
    sec = _sec_cache.get(prefix)
    if sec is None:
        if not (len(prefix) == 19 and prefix[4] == "-" and prefix[7] == "-" and prefix[10] == "T"
                and prefix[13] == ":" and prefix[16] == ":"):
            return -1
        tm = _TM()
        if _run(prefix, 0, _DOCKER_HEAD, tm) != 19:
            return -1
        sec = _timegm(tm.year, tm.mon, tm.mday, tm.hour, tm.min, tm.sec)
        if len(_sec_cache) >= _CACHE_MAX:
            _sec_cache.clear()
        _sec_cache[prefix] = sec
    return sec


_DOCKER_HEAD = _compile_steps("%Y-%m-%dT%H:%M:%S")
_POW = (1_000_000_000, 100_000_000, 10_000_000, 1_000_000, 100_000, 10_000, 1_000, 100, 10, 1)


def _rfc3339(text: str) -> tuple[int, int, int | None] | None:
    """(wall-clock epoch seconds, fraction ns, zone offset seconds or None)."""
    n = len(text)
    if n < 19:
        return None
    sec = _sec_cache.get(text[:19])
    if sec is None:
        sec = _prefix_seconds(text[:19])
        if sec < 0:
            return None
    if n == 19:
        return sec, 0, None
    off: int | None
    last = text[-1]
    if last == "Z" or last == "z":
        body = text[19:-1]
        off = 0
    elif n >= 25 and text[-6] in "+-" and text[-3] == ":":
        zone = text[-5:-3] + text[-2:]
        if not (zone.isdigit() and zone.isascii()):
            return None
        off = int(zone[:2]) * 3600 + int(zone[2:]) * 60
        if text[-6] == "-":
            off = -off
        body = text[19:-6]
    elif n >= 24 and text[-5] in "+-":
        zone = text[-4:]
        if not (zone.isdigit() and zone.isascii()):
            return None
        off = int(zone[:2]) * 3600 + int(zone[2:]) * 60
        if text[-5] == "-":
            off = -off
        body = text[19:-5]
    else:
        body = text[19:]
        off = None
    if not body:
        return sec, 0, off
    digits = body[1:]
    nd = len(digits)
    if body[0] != "." or not 0 < nd < 10 or not digits.isdigit() or not digits.isascii():
        return None
    return sec, int(digits) * _POW[nd], off


def rfc3339_ns(text: str | bytes) -> int | None:
    """Docker/CRI timestamps (``2019-12-19T17:41:12.70630778Z``: 0-9 fraction digits, ``Z`` or
    ``+hh:mm``/``+hhmm``) -> nanoseconds since the epoch; None if the text is not one."""
    if type(text) is bytes:
        try:
            text = text.decode("ascii")
        except UnicodeDecodeError:
            return None
    if text[-1:] == "Z" and text[19:20] == ".":  # the common shape, inline
        sec = _sec_cache.get(text[:19])  # type: ignore[arg-type]
        if sec is not None:
            digits = text[20:-1]
            nd = len(digits)
            if 0 < nd < 10 and digits.isdigit() and digits.isascii():
                return sec * _NS + int(digits) * _POW[nd]
    parts = _rfc3339(text)  # type: ignore[arg-type]
    if parts is None:
        return None
    sec, frac, off = parts
    return (sec - (off or 0)) * _NS + frac


def _fast_docker(text: str, zone: bool, offset: int) -> int | None:
    """Time_Format ``%Y-%m-%dT%H:%M:%S.%L[%z]`` on a canonical timestamp, or None (-> slow)."""
    if text[-1:] == "Z" and text[19:20] == ".":  # the common shape, inline
        sec = _sec_cache.get(text[:19])
        if sec is not None:
            digits = text[20:-1]
            nd = len(digits)
            if 0 < nd < 10 and digits.isdigit() and digits.isascii():
                return (sec if zone else sec - offset) * _NS + int(digits) * _POW[nd]
    parts = _rfc3339(text)
    if parts is None:
        return None
    sec, frac, off = parts
    if zone:
        if off is None:
            return None  # %z is required: let the full parser decide
        return (sec - off) * _NS + frac
    # Without %z Fluent Bit ignores whatever follows the fraction and applies Time_Offset.
    return (sec - offset) * _NS + frac


TimeParser = Callable[[str], tuple[int | None, str]]
