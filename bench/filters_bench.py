"""The common filters: the seed pipeline with grep + modify + nest, and each filter alone.

Part 1 runs the real agent (``python -m rillet -c ...``) as a child process over the corpus of
``/work/shared/bench/gen_corpus.py`` (50 pods, 1,000,000 Docker json-file records, cached under
``$TMPDIR/rillet-tail-bench``, shared with tail_bench.py)::

    tail: Path <corpus>/var/log/containers/*.log, Tag kube.*, Read_from_Head on,
          Exit_On_Eof on, Parser docker, Docker_Mode On, DB <tmp>/tail.db
    [kubernetes: Kube_Meta_Preload_Cache_Dir <corpus>/meta, Kube_Tag_Prefix (tail's tag),
                 Merge_Log On, Merge_Log_Key data, K8S-Logging.Parser On,
                 K8S-Logging.Exclude On]   (when rillet has it)
    grep:   Exclude log kube-probe  (health checks)
    modify: Add cluster prod, Rename stream source
    nest:   Operation nest, Wildcard time, Wildcard source, Nest_under docker
    null:   Match *

and reports records per CPU-second of the agent (user + system of the child), for tail alone,
tail + each filter, and the whole chain.

Part 2 times each filter's ``filter()`` in-process on batches of 1,000 corpus records (bytes
bodies, as tail hands them over): records per CPU-second of the filter alone.

    .venv/bin/python bench/filters_bench.py [--corpus DIR] [--repeat N] [--part 1|2]
"""

from __future__ import annotations

import argparse
import compileall
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rillet.config.model import Section  # noqa: E402
from rillet.config.options import resolve  # noqa: E402
from rillet.engine.chunk import Batch  # noqa: E402
from rillet.engine.metrics import BY_KIND, Counters  # noqa: E402
from rillet.engine.plugin import Filter, full_table, lookup  # noqa: E402

sys.path.insert(0, str(ROOT / "bench"))
from tail_bench import corpus, reset_db, run_agent  # noqa: E402  (the shared corpus)

Settings = list[tuple[str, str]]

GREP: Settings = [("exclude", "log kube-probe")]
MODIFY: Settings = [("add", "cluster prod"), ("rename", "stream source")]
NEST: Settings = [("operation", "nest"), ("wildcard", "time"), ("wildcard", "source"),
                  ("nest_under", "docker")]


def kubernetes(meta: Path, log_dir: Path) -> Settings:
    # tail's tag: Tag kube.* with the file's path, '/' as '.'.
    prefix = "kube." + str(log_dir).strip("/").replace("/", ".") + "."
    return [("kube_meta_preload_cache_dir", str(meta)), ("kube_tag_prefix", prefix),
            ("merge_log", "on"),
            ("merge_log_key", "data"), ("k8s-logging.parser", "on"),
            ("k8s-logging.exclude", "on")]


# --- part 1: the agent ---------------------------------------------------------------------

def agent(log_dir: Path, work: Path, filters: list[tuple[str, Settings]],
          pattern: str = "*.log") -> float:
    """CPU seconds of one agent run."""
    db = work / "tail.db"
    reset_db(db)
    lines = ["[SERVICE]", "    flush 1", "    grace 5", "    log_level error",
             "[INPUT]", "    name tail", "    tag kube.*", f"    path {log_dir}/{pattern}",
             "    read_from_head on", "    exit_on_eof on", "    parser docker",
             "    docker_mode on", f"    db {db}"]
    for name, settings in filters:
        lines += ["[FILTER]", f"    name {name}", "    match kube.*"]
        lines += [f"    {k} {v}" for k, v in settings]
    lines += ["[OUTPUT]", "    name null", "    match *"]
    conf = work / "bench.conf"
    conf.write_text("\n".join(lines) + "\n")
    return run_agent(["-m", "rillet", "-c", str(conf)])[0]


def part1(log_dir: Path, meta: Path, records: int, repeat: int) -> None:
    print(f"part 1: the agent, tail -> filters -> null, {records:,} records")
    chains: list[tuple[str, list[tuple[str, Settings]]]] = [
        ("tail alone", []),
        ("+ grep", [("grep", GREP)]),
        ("+ modify", [("modify", MODIFY)]),
        ("+ nest", [("nest", NEST)]),
        ("+ grep + modify + nest", [("grep", GREP), ("modify", MODIFY), ("nest", NEST)]),
    ]
    if (ROOT / "rillet" / "filters" / "kubernetes").exists():
        kube = ("kubernetes", kubernetes(meta, log_dir))
        chains += [("+ kubernetes", [kube]),
                   ("seed: + kubernetes + grep + modify + nest",
                    [kube, ("grep", GREP), ("modify", MODIFY), ("nest", NEST)])]
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        base = min(agent(log_dir, work, [], "none-*.nothing") for _ in range(repeat))
        print(f"  startup alone: {base:.2f} CPU-s")
        alone = 0.0
        for label, chain in chains:
            try:
                cpu = min(agent(log_dir, work, chain) for _ in range(repeat))
            except RuntimeError as exc:
                print(f"  {label:<42} failed: {exc}")
                continue
            if not chain:
                alone = cpu
            extra = f", filters {cpu - alone:+.2f} CPU-s" if chain else ""
            print(f"  {label:<42} {records / cpu:>10,.0f} records per CPU-second "
                  f"({cpu:.2f} CPU-s{extra})", flush=True)


# --- part 2: each filter alone ---------------------------------------------------------------

def make(name: str, settings: Settings) -> Filter:
    cls = lookup("filter", name)
    assert cls is not None
    section = Section("filter", "bench.conf", 1)
    section.set("name", name)
    for i, (key, value) in enumerate([("match", "kube.*"), *settings], 2):
        section.set(key, value, "bench.conf", i)
    errors: list[str] = []
    opts = resolve(section, full_table(cls), errors)
    assert not errors, errors
    plugin = cls(f"{name}.0", opts, logging.getLogger("bench"), Counters(BY_KIND["filter"]))
    assert isinstance(plugin, Filter)
    return plugin


LUA = """
function add_source(tag, timestamp, record)
    record["source"] = record["stream"]
    record["stream"] = nil
    return 2, timestamp, record
end
"""


def part2(log_dir: Path, limit: int) -> None:
    lines: list[bytes] = []
    for path in sorted(log_dir.glob("*.log")):
        with path.open("rb") as fh:
            lines += [line.rstrip(b"\n") for line in fh]
        if len(lines) >= limit:
            break
    lines = lines[:limit]
    print(f"part 2: each filter's filter() alone, {len(lines):,} records in batches of 1,000")
    cases: list[tuple[str, str, Settings]] = [
        ("grep (Exclude, no match)", "grep", GREP),
        ("grep (Ruby ^ anchor)", "grep", [("exclude", r"log ^\s*$")]),
        ("grep (Regex on stream)", "grep", [("regex", "stream ^stdout$")]),
        ("grep (accessor key)", "grep", [("regex", "$log GET")]),
        ("modify (Add + Rename)", "modify", MODIFY),
        ("modify (Add only: spliced)", "modify", [("add", "cluster prod")]),
        ("modify (Condition + Set)", "modify", [("condition", "Key_value_equals stream "
                                                 "stderr"), ("set", "level error")]),
        ("nest (nest 2 keys)", "nest", [("operation", "nest"), ("wildcard", "time"),
                                        ("wildcard", "stream"), ("nest_under", "docker")]),
        ("nest (lift, key absent)", "nest", [("operation", "lift"),
                                             ("nested_under", "kubernetes")]),
        ("record_modifier (Record)", "record_modifier", [("record", "hostname node-1")]),
        ("rewrite_tag (1 in 5 re-emitted)", "rewrite_tag", [("rule", "$stream ^stderr$ "
                                                             "err.$TAG true")]),
        ("throttle (Rate 1000/s)", "throttle", [("rate", "1000")]),
        ("lua (move a key)", "lua", [("code", LUA), ("call", "add_source")]),
    ]
    for label, name, settings in cases:
        plugin = make(name, settings)
        emitter = None
        if hasattr(plugin, "attach_emitter"):
            from rillet.inputs.emitter import Emitter
            cls: Any = Emitter
            emitter = cls("emitter.0", resolve(Section("input", "b", 1), full_table(cls), []),
                          logging.getLogger("bench"), Counters(BY_KIND["input"]))
            plugin.attach_emitter(emitter)  # type: ignore[attr-defined]
        batches = [Batch("kube.var.log.containers.x", [0] * len(chunk), list(chunk),
                         sum(map(len, chunk)))
                   for chunk in (lines[i:i + 1000] for i in range(0, len(lines), 1000))]
        cpu0 = time.process_time()
        kept = 0
        for batch in batches:
            kept += len(plugin.filter(batch))
            if emitter is not None:
                emitter.pending.clear()
                emitter.pending_bytes = 0
        cpu = time.process_time() - cpu0
        print(f"  {label:<34} {len(lines) / cpu:>12,.0f} records per CPU-second "
              f"({kept:,} kept)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", type=Path,
                        default=Path(tempfile.gettempdir()) / "rillet-tail-bench" / "corpus")
    parser.add_argument("--repeat", type=int, default=1, help="agent runs per chain (best)")
    parser.add_argument("--records", type=int, default=200_000, help="records for part 2")
    parser.add_argument("--part", type=int, choices=(1, 2), default=None)
    args = parser.parse_args()
    log_dir, records = corpus(args.corpus)
    meta = args.corpus / "meta"
    compileall.compile_dir(str(ROOT / "rillet"), quiet=1)
    if args.part in (None, 2):
        part2(log_dir, args.records)
    if args.part in (None, 1):
        part1(log_dir, meta, records, max(1, args.repeat))


if __name__ == "__main__":
    main()
