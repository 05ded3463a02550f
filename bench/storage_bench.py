"""Storage modes on the seed-like pipeline: tail (docker parser, Docker_Mode, DB) -> null.

The corpus is tail_bench's (1,000,000 Docker json-file records from
``/work/shared/bench/gen_corpus.py``, cached under ``$TMPDIR/rillet-tail-bench``). Each run starts
the real agent as a child process (``rillet.cli.main`` with ``-c``; at exit the child copies its
``/proc/self/io``) and reports records per CPU-second, bytes the agent wrote (``wchar``: every
write call, so the tail DB's writes are in the memory baseline too; ``write_bytes``: what
reached the block layer), and peak RSS, for:

    memory       storage.type memory      -> null
    filesystem   storage.type filesystem  -> null   (every chunk written, then deleted)
    overflow     storage.type overflow    -> null   (outputs keep up: must write ~0 bytes)
    overflow/down storage.type overflow   -> file output whose directory is missing (every
                 flush fails and is retried: chunks spill to disk; what is left at exit is
                 persisted for the next run)

    .venv/bin/python bench/storage_bench.py [--corpus DIR] [--repeat N]
"""

from __future__ import annotations

import argparse
import compileall
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from tail_bench import corpus, run_agent  # noqa: E402  (the shared corpus and its cache)

CHILD = ("import atexit, shutil, sys\n"
         "atexit.register(shutil.copyfile, '/proc/self/io', sys.argv[2])\n"
         "from rillet.cli import main\n"
         "sys.argv = ['rillet', '-c', sys.argv[1]]\n"
         "raise SystemExit(main())\n")


def run(log_dir: Path, work: Path, storage: str, down: bool) -> dict[str, float]:
    for stale in work.glob("*"):
        if stale.is_file():
            stale.unlink()
    store = work / "storage"
    subprocess.run(["rm", "-rf", str(store)], check=True)
    db = work / "tail.db"
    conf = work / "bench.conf"
    lines = ["[SERVICE]", "    flush 1", "    grace 2", "    log_level error",
             f"    storage.path {store}", "    scheduler.base 1", "    scheduler.cap 2",
             "[INPUT]", "    name tail", "    tag kube.*",
             f"    path {log_dir}/*.log", "    read_from_head on", "    exit_on_eof on",
             "    parser docker", "    docker_mode on", f"    db {db}",
             f"    storage.type {storage}"]
    if down:
        lines += ["[OUTPUT]", "    name file", "    match *", f"    path {work}/missing/dir",
                  "    retry_limit no_limits"]
    else:
        lines += ["[OUTPUT]", "    name null", "    match *"]
    conf.write_text("\n".join(lines) + "\n")
    io_path = work / "io.txt"
    cpu, wall, rss = run_agent(["-c", CHILD, str(conf), str(io_path)],
                               stderr=subprocess.DEVNULL if down else None)
    io = dict(line.split(": ") for line in io_path.read_text().splitlines())
    left = sum(p.stat().st_size for p in store.rglob("*.flb")) if store.exists() else 0
    return {"cpu": cpu, "wall": wall, "rss": rss, "wchar": int(io["wchar"]),
            "write_bytes": int(io["write_bytes"]), "left": left}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path,
                        default=Path(tempfile.gettempdir()) / "rillet-tail-bench" / "corpus")
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per setting; the least CPU is reported")
    args = parser.parse_args()
    log_dir, records = corpus(args.corpus)
    compileall.compile_dir(str(ROOT / "rillet"), quiet=1)
    size = sum(p.stat().st_size for p in log_dir.glob("*.log"))
    print(f"tail (docker parser, Docker_Mode, DB) -> null: {records:,} records, "
          f"{size / 1e6:.0f} MB")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = 0
        for label, storage, down in (("memory", "memory", False),
                                     ("filesystem", "filesystem", False),
                                     ("overflow", "overflow", False),
                                     ("overflow/down", "overflow", True)):
            runs = [run(log_dir, work, storage, down) for _ in range(max(1, args.repeat))]
            r = min(runs, key=lambda x: x["cpu"])
            if label == "memory":
                base = int(r["wchar"])
            print(f"  {label:<14} {records / r['cpu']:>9,.0f} records per CPU-second "
                  f"({r['cpu']:.2f} CPU-s, {r['wall']:.2f} s wall), "
                  f"written {(r['wchar'] - base) / 1e6:8.1f} MB more than memory "
                  f"(block layer {r['write_bytes'] / 1e6:.1f} MB), "
                  f"peak RSS {max(x['rss'] for x in runs):.0f} MB"
                  + (f", {r['left'] / 1e6:.1f} MB left on disk for the next run"
                     if r["left"] else ""))


if __name__ == "__main__":
    main()
