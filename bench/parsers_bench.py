"""Parser throughput: the ``nginx`` regex parser and the ``docker`` JSON parser.

Lines look like /work/shared/bench/gen_corpus.py's: nginx access lines (a few hundred clients,
paths with query strings, 200 lines per second of log time) and Docker json-file envelopes
around them (Go's RFC 3339 nano timestamps, trailing zeros trimmed). Lines are generated in
blocks of 100,000 as bytes (what the tail input hands over); only ``parse`` is timed.

Prints records per CPU-second (time.process_time) per parser and the peak RSS.

    .venv/bin/python bench/parsers_bench.py [--lines 1000000]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rillet.parsers.registry import ParserRegistry

BASE_EPOCH = 1576777272  # 2019-12-19T17:41:12Z, as gen_corpus.py
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
BLOCK = 100_000
PER_SECOND = 200


def nginx_lines(rng: random.Random, n: int, start: int) -> list[str]:
    clients = [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(256)}"
               for _ in range(300)]
    paths = ["/", "/index.html", "/api/v1/orders", "/static/app.js", "/healthz", "/login"]
    agents = ["hey/0.0.1", "curl/7.64.1", "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101"]
    out = []
    for i in range(n):
        sec = BASE_EPOCH + (start + i) // PER_SECOND
        t = time.gmtime(sec)
        stamp = (f"{t.tm_mday:02d}/{MONTHS[t.tm_mon - 1]}/{t.tm_year:04d}:"
                 f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000")
        path = rng.choice(paths)
        if rng.random() < 0.5:
            path += f"?id={rng.randrange(5000)}&page={rng.randrange(50)}&sort=asc"
        code = rng.choice((200, 200, 200, 304, 404))
        out.append(f'{rng.choice(clients)} - - [{stamp}] "GET {path} HTTP/1.1" {code} '
                   f'{rng.randrange(100, 50_000)} "-" "{rng.choice(agents)}" "-"')
    return out


def rfc3339nano(ns: int) -> str:
    sec, frac = divmod(ns, 1_000_000_000)
    t = time.gmtime(sec)
    iso = (f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
           f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}")
    if frac == 0:
        return iso + "Z"
    return f"{iso}.{frac:09d}".rstrip("0") + "Z"


def blocks(kind: str, total: int) -> Iterator[list[bytes]]:
    rng = random.Random(7)
    done = 0
    while done < total:
        n = min(BLOCK, total - done)
        lines = nginx_lines(rng, n, done)
        if kind == "nginx":
            yield [line.encode() for line in lines]
        else:
            out = []
            for i, line in enumerate(lines):
                ns = (BASE_EPOCH * 1_000_000_000 + (done + i) * (1_000_000_000 // PER_SECOND)
                      + rng.randrange(1_000_000))
                out.append(b'{"log":%s,"stream":"stdout","time":"%s"}' % (
                    json.dumps(line + "\n").encode(), rfc3339nano(ns).encode()))
            yield out
        done += n


def measure(name: str, parse: Callable[[bytes], object], kind: str, total: int) -> float:
    cpu = 0.0
    ok = 0
    for block in blocks(kind, total):
        start = time.process_time()
        for line in block:
            if parse(line) is not None:
                ok += 1
        cpu += time.process_time() - start
    if ok != total:
        raise SystemExit(f"{name}: only {ok} of {total} lines parsed")
    return total / cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lines", type=int, default=1_000_000)
    args = ap.parse_args()
    registry = ParserRegistry()
    for name, kind in (("nginx", "nginx"), ("docker", "docker")):
        parser = registry.get(name)
        assert parser is not None
        rate = measure(name, parser.parse, kind, args.lines)
        print(f"{name:7s} ({parser.format} parser): {args.lines:,} lines, "
              f"{rate:,.0f} records per CPU-second")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {peak:.0f} MiB (includes one {BLOCK:,}-line block of input)")


if __name__ == "__main__":
    main()
