"""``rillet top``: a live view of a running agent, read from its monitoring API.

Every second it reads ``/api/v2/pipeline`` (``HTTP_Server On``) and shows, per input, filter and
output, records/s and bytes/s (from the change since the last read), errors, retries, bytes
behind, paused state and time, pending records and the time since each output's last success.
Plain ANSI (no dependency): the screen is cleared and redrawn; ``--once`` prints one frame
(two reads ``--interval`` apart) without clearing, for scripts and tests.
"""

from __future__ import annotations

import argparse
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Any

import orjson

CLEAR = "\x1b[H\x1b[2J"
BOLD, DIM, RED, YELLOW, RESET = "\x1b[1m", "\x1b[2m", "\x1b[31m", "\x1b[33m", "\x1b[0m"


def fetch(host: str, port: int, timeout: float = 2.0) -> dict[str, Any]:
    url = f"http://{host}:{port}/api/v2/pipeline"
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        data = orjson.loads(resp.read())
    if not isinstance(data, dict):
        raise ValueError("unexpected answer from /api/v2/pipeline")
    return data


def human(n: float) -> str:
    for unit in ("", "K", "M", "G", "T"):
        if abs(n) < 1000:
            return f"{n:.0f}{unit}" if unit == "" else f"{n:.1f}{unit}"
        n /= 1000
    return f"{n:.1f}P"


def duration(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _rate(now: dict[str, Any], before: dict[str, Any] | None, key: str, dt: float) -> float:
    if before is None or dt <= 0:
        return 0.0
    return max(0.0, (now.get(key, 0) - before.get(key, 0)) / dt)


def _row(cells: Sequence[str], widths: Sequence[int]) -> str:
    first, *rest = cells
    return f"{first:<{widths[0]}}" + "".join(f"{c:>{w}}" for c, w in zip(rest, widths[1:],
                                                                          strict=True))


def render(state: dict[str, Any], previous: dict[str, Any] | None, where: str,
           color: bool = True) -> str:
    """One frame: ``state`` from /api/v2/pipeline, ``previous`` the read before (for rates)."""
    def c(code: str, text: str) -> str:
        return f"{code}{text}{RESET}" if color else text

    dt = state.get("time", 0) - (previous or {}).get("time", 0) if previous else 0.0
    lines = [c(BOLD, f"rillet top  {where}  status {state.get('status', '?')}  uptime "
                     f"{duration(state.get('uptime_sec', 0))}  reloads "
                     f"{state.get('hot_reload_count', 0)}"), ""]
    name_w = max([12, *(len(n) + 2 for kind in ("input", "filter", "output")
                        for n in state.get(kind, {}))])

    widths = [name_w, 11, 10, 12, 8, 9, 10, 10]
    lines.append(c(BOLD, _row(["INPUT", "records/s", "bytes/s", "records", "errors", "paused",
                               "paused s", "behind"], widths)))
    prev_in = (previous or {}).get("input", {})
    for name, m in state.get("input", {}).items():
        row = _row([name, human(_rate(m, prev_in.get(name), "records", dt)),
                    human(_rate(m, prev_in.get(name), "bytes", dt)), human(m.get("records", 0)),
                    str(m.get("errors", 0)), "yes" if m.get("paused") else "no",
                    f"{m.get('paused_seconds', 0):.1f}", human(m.get("bytes_behind", 0))],
                   widths)
        lines.append(c(YELLOW, row) if m.get("paused") else row)
        for path, behind in sorted(m.get("files", {}).items(), key=lambda kv: -kv[1])[:5]:
            if behind:
                lines.append(c(DIM, f"    {path}: {human(behind)}B behind"))

    lines.append("")
    widths = [name_w, 11, 10, 12, 10, 10]
    lines.append(c(BOLD, _row(["FILTER", "records/s", "bytes/s", "records", "dropped",
                               "added"], widths)))
    prev_f = (previous or {}).get("filter", {})
    for name, m in state.get("filter", {}).items():
        lines.append(_row([name, human(_rate(m, prev_f.get(name), "records", dt)),
                           human(_rate(m, prev_f.get(name), "bytes", dt)),
                           human(m.get("records", 0)), human(m.get("drop_records", 0)),
                           human(m.get("add_records", 0))], widths))

    lines.append("")
    widths = [name_w, 11, 10, 8, 9, 8, 10, 10]
    lines.append(c(BOLD, _row(["OUTPUT", "records/s", "bytes/s", "errors", "retries", "failed",
                               "pending", "last ok"], widths)))
    prev_o = (previous or {}).get("output", {})
    for name, m in state.get("output", {}).items():
        since = m.get("seconds_since_last_success", 0.0)
        last = "never" if m.get("last_success") is None else duration(since) + " ago"
        row = _row([name, human(_rate(m, prev_o.get(name), "proc_records", dt)),
                    human(_rate(m, prev_o.get(name), "proc_bytes", dt)),
                    str(m.get("errors", 0)), str(m.get("retries", 0)),
                    str(m.get("retries_failed", 0)), human(m.get("pending_records", 0)),
                    last], widths)
        stalled = m.get("pending_records", 0) and since > 60
        lines.append(c(RED, row) if stalled else row)
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str]) -> int:
    ap = argparse.ArgumentParser(prog="rillet top", description="Live view of a running agent "
                                 "(needs HTTP_Server On).")
    ap.add_argument("-H", "--host", default="127.0.0.1", help="agent address")
    ap.add_argument("-P", "--port", type=int, default=2020, help="monitoring port (2020)")
    ap.add_argument("-i", "--interval", type=float, default=1.0, help="seconds between reads")
    ap.add_argument("--once", action="store_true", help="print one frame and exit")
    ap.add_argument("--no-color", action="store_true", help="no ANSI colors")
    ns = ap.parse_args(list(argv))
    where = f"{ns.host}:{ns.port}"
    color = not ns.no_color and sys.stdout.isatty()
    previous: dict[str, Any] | None = None
    try:
        while True:
            try:
                state = fetch(ns.host, ns.port)
            except (OSError, ValueError, urllib.error.URLError) as exc:
                if ns.once:
                    print(f"rillet top: cannot read http://{where}/api/v2/pipeline: {exc}",
                          file=sys.stderr)
                    return 1
                sys.stdout.write(f"{CLEAR}rillet top  {where}: cannot reach the agent ({exc}); "
                                 "retrying\n")
                sys.stdout.flush()
                previous = None
                time.sleep(ns.interval)
                continue
            if ns.once and previous is None:
                previous = state
                time.sleep(ns.interval)
                continue
            frame = render(state, previous, where, color)
            if ns.once:
                sys.stdout.write(frame)
                return 0
            sys.stdout.write(CLEAR + frame)
            sys.stdout.flush()
            previous = state
            time.sleep(ns.interval)
    except KeyboardInterrupt:
        return 0
