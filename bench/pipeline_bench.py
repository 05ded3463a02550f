"""The seed pipeline: tail -> kubernetes -> null over a Kubernetes node's worth of logs.

Corpus: ``gen_corpus.py --pods 50 --lines 1000000`` (the same one, and the same cache folder,
as ``tail_bench.py``). Each run starts the real agent (``python -m rillet -c ...``) as a child
process with the seed configuration (seed-pipeline.md §2), the API replaced by the corpus'
``meta/`` folder (Kube_Meta_Preload_Cache_Dir: no API server needed), and the output by null::

    tail: Tag kube.*, Path <corpus>/var/log/containers/*.log, DB, Parser docker,
          Docker_Mode On, Skip_Long_Lines On, Refresh_Interval 10, Read_from_Head on,
          Exit_On_Eof on [, Mem_Buf_Limit 5MB]
    kubernetes: Merge_Log On, Merge_Log_Key data, K8S-Logging.Parser On,
          K8S-Logging.Exclude On, Kube_Meta_Preload_Cache_Dir <corpus>/meta
    null

It reports records per CPU-second of the agent (user + system time of the child, from wait4),
wall-clock records per second and peak RSS (ru_maxrss), without Mem_Buf_Limit and with
``Mem_Buf_Limit 5MB``; each setting runs ``--repeat`` times (best and spread reported).
Fluent Bit 5.1.1 here: ~96k records per CPU-second, ~870 MB peak RSS without Mem_Buf_Limit,
~4,500 records/s wall with it. Targets (issue 5): >= 190k records per CPU-second; with 5MB,
peak RSS <= 64 MB and >= 72k records/s wall.

    .venv/bin/python bench/pipeline_bench.py [--corpus DIR] [--repeat N] [--profile]
"""

from __future__ import annotations

import argparse
import compileall
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tail_bench import ROOT, corpus, print_profile, reset_db, run_agent  # a sibling script


def config(log_dir: Path, meta: Path, work: Path, mem_buf_limit: str | None,
           pattern: str, with_filter: bool = True) -> Path:
    prefix = "kube." + str(log_dir).strip("/").replace("/", ".") + "."
    lines = ["[SERVICE]", "    flush 1", "    grace 5", "    log_level warn",
             "[INPUT]", "    name tail", "    tag kube.*", f"    path {log_dir}/{pattern}",
             f"    db {work / 'flb_kube.db'}", "    parser docker", "    docker_mode on",
             "    skip_long_lines on", "    refresh_interval 10", "    read_from_head on",
             "    exit_on_eof on"]
    if mem_buf_limit:
        lines.append(f"    mem_buf_limit {mem_buf_limit}")
    if with_filter:
        lines += ["[FILTER]", "    name kubernetes", "    match kube.*",
                  "    kube_url http://127.0.0.1:9", f"    kube_tag_prefix {prefix}",
                  f"    kube_meta_preload_cache_dir {meta}", "    merge_log on",
                  "    merge_log_key data", "    k8s-logging.parser on",
                  "    k8s-logging.exclude on"]
    lines += ["[OUTPUT]", "    name null", "    match *"]
    conf = work / "pipeline.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def run(conf: Path, work: Path, profile: bool) -> tuple[float, float, float]:
    reset_db(work / "flb_kube.db")
    profiling = ["-m", "cProfile", "-o", str(work / "pipeline.prof")] if profile else []
    return run_agent([*profiling, "-m", "rillet", "-c", str(conf)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path,
                        default=Path(tempfile.gettempdir()) / "rillet-tail-bench" / "corpus")
    parser.add_argument("--repeat", type=int, default=3, help="runs per setting")
    parser.add_argument("--profile", action="store_true", help="print a cProfile of one run")
    parser.add_argument("--only", choices=("nolimit", "5MB"), help="run one setting only")
    parser.add_argument("--baseline", action="store_true",
                        help="also run tail -> null alone (what the filter adds)")
    args = parser.parse_args()
    log_dir, records = corpus(args.corpus)
    meta = args.corpus / "meta"
    compileall.compile_dir(str(ROOT / "rillet"), quiet=1)
    size = sum(p.stat().st_size for p in log_dir.glob("*.log"))
    print(f"seed pipeline tail -> kubernetes -> null: {records:,} records, {size / 1e6:.0f} MB "
          f"in {len(list(log_dir.glob('*.log')))} files")
    settings = [("no Mem_Buf_Limit", None), ("Mem_Buf_Limit 5MB", "5MB")]
    if args.only:
        settings = [s for s in settings if (s[1] or "nolimit") == args.only]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = min(run(config(log_dir, meta, work, None, "none-*.nothing"), work, False)[0]
                   for _ in range(max(1, args.repeat)))
        print(f"  startup alone: {base:.2f} CPU-s")
        if args.baseline:
            conf = config(log_dir, meta, work, None, "*.log", with_filter=False)
            cpu = min(run(conf, work, False)[0] for _ in range(max(1, args.repeat)))
            print(f"  tail -> null alone {records / cpu:>9,.0f} records per CPU-second "
                  f"({cpu:.2f} CPU-s)")
        for label, limit in settings:
            conf = config(log_dir, meta, work, limit, "*.log")
            runs = [run(conf, work, args.profile) for _ in range(max(1, args.repeat))]
            rates = sorted(records / cpu for cpu, _, _ in runs)
            walls = sorted(records / wall for _, wall, _ in runs)
            cpu, wall, _ = min(runs)
            print(f"  {label:<18} {rates[-1]:>9,.0f} records per CPU-second "
                  f"(runs {rates[0]:,.0f}..{rates[-1]:,.0f}; best {cpu:.2f} CPU-s), "
                  f"{walls[-1]:>9,.0f} records/s wall (runs {walls[0]:,.0f}..{walls[-1]:,.0f}; "
                  f"{wall:.2f} s), peak RSS {max(r[2] for r in runs):.1f} MB")
            if args.profile:
                print_profile(work / "pipeline.prof")


if __name__ == "__main__":
    main()
