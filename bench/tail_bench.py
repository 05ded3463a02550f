"""tail -> null over a Kubernetes node's worth of container logs.

The corpus (50 pods, 1,000,000 Docker json-file records, ~300 MB) comes from
``/work/shared/bench/gen_corpus.py`` and is cached under ``$TMPDIR/rillet-tail-bench``. Each run
starts the real agent (``python -m rillet -c ...``) as a child process with::

    tail: Path <corpus>/var/log/containers/*.log, Read_from_Head on, Exit_On_Eof on,
          Parser docker, Docker_Mode On, DB <tmp>/tail.db [, Mem_Buf_Limit 5MB]
    null: Match *

and reports records per CPU-second of the agent (user + system time of the child, from
wait4) and its peak RSS, once without Mem_Buf_Limit and once with ``Mem_Buf_Limit 5MB``.
Fluent Bit 5.1.1 does ~258k records per CPU-second and 170 MB peak RSS here (issue 3).

    .venv/bin/python bench/tail_bench.py [--corpus DIR] [--profile]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GEN = Path("/work/shared/bench/gen_corpus.py")


def corpus(path: Path) -> tuple[Path, int]:
    manifest = path / "manifest.json"
    if not manifest.exists():
        print(f"generating the corpus in {path} ...", flush=True)
        subprocess.run([sys.executable, str(GEN), "--pods", "50", "--lines", "1000000",
                        str(path)], check=True, stdout=subprocess.DEVNULL)
    info = json.loads(manifest.read_text())["summary"]
    return Path(info["log_dir"]), int(info["records"])


def reset_db(db: Path) -> None:
    """Remove an offsets database (and its WAL files) so that a run reads from the start."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def run_agent(args: list[str], **popen: Any) -> tuple[float, float, float]:
    """Run a Python child (``args`` after the interpreter) to its exit: its CPU seconds (user
    + system, from wait4), wall seconds and peak RSS in MB. A failed run stops the benchmark."""
    wall0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, **popen)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - wall0
    if status != 0:
        raise SystemExit(f"agent exited with status {status}")
    return usage.ru_utime + usage.ru_stime, wall, usage.ru_maxrss / 1024


def print_profile(path: Path) -> None:
    import pstats
    pstats.Stats(str(path)).sort_stats("tottime").print_stats(25)


def run(log_dir: Path, work: Path, mem_buf_limit: str | None,
        profile: bool, pattern: str = "*.log") -> tuple[float, float, float, int]:
    db = work / "tail.db"
    reset_db(db)
    conf = work / "bench.conf"
    lines = ["[SERVICE]", "    flush 1", "    grace 5", "    log_level warn",
             "[INPUT]", "    name tail", "    tag kube.*",
             f"    path {log_dir}/{pattern}", "    read_from_head on", "    exit_on_eof on",
             "    parser docker", "    docker_mode on", f"    db {db}"]
    if mem_buf_limit:
        lines.append(f"    mem_buf_limit {mem_buf_limit}")
    lines += ["[OUTPUT]", "    name null", "    match *"]
    conf.write_text("\n".join(lines) + "\n")
    profiling = ["-m", "cProfile", "-o", str(work / "tail.prof")] if profile else []
    cpu, wall, rss = run_agent([*profiling, "-m", "rillet", "-c", str(conf)])
    import sqlite3
    with sqlite3.connect(db) as conn:
        stored = sum(r[0] for r in conn.execute("SELECT offset FROM in_tail_files"))
    return cpu, wall, rss, stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path,
                        default=Path(tempfile.gettempdir()) / "rillet-tail-bench" / "corpus")
    parser.add_argument("--profile", action="store_true", help="write a cProfile of each run")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per setting; the best (least CPU) is reported")
    args = parser.parse_args()
    log_dir, records = corpus(args.corpus)
    # An installed agent runs from compiled bytecode; an editable checkout may not have it yet
    # (PYTHONDONTWRITEBYTECODE), which would charge every run with compiling rillet.
    compileall.compile_dir(str(ROOT / "rillet"), quiet=1)
    size = sum(p.stat().st_size for p in log_dir.glob("*.log"))
    print(f"tail (docker parser, Docker_Mode, DB) -> null: {records:,} records, "
          f"{size / 1e6:.0f} MB in {len(list(log_dir.glob('*.log')))} files")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        # The agent's fixed cost (interpreter, imports, plugin setup) on a path matching nothing.
        base = min(run(log_dir, work, None, False, "none-*.nothing")[0]
                   for _ in range(max(1, args.repeat)))
        print(f"  startup alone: {base:.2f} CPU-s")
        for label, limit in (("no Mem_Buf_Limit", None), ("Mem_Buf_Limit 5MB", "5MB")):
            runs = [run(log_dir, work, limit, args.profile) for _ in range(max(1, args.repeat))]
            cpu, wall, _rss, stored = min(runs)
            ok = "all offsets stored" if stored == size else f"offsets {stored}/{size}"
            print(f"  {label:<18} {records / cpu:>10,.0f} records per CPU-second "
                  f"({cpu:.2f} CPU-s, {wall:.2f} s wall; "
                  f"{records / max(cpu - base, 1e-9):,.0f}/CPU-s after startup), "
                  f"peak RSS {max(r[2] for r in runs):.1f} MB, {ok}")
            if args.profile:
                print_profile(work / "tail.prof")


if __name__ == "__main__":
    main()
