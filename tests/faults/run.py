"""Run the fault matrix: ``python -m tests.faults.run [--runs 3] [--scale 1] [names...]``.

Prints one line per run and, with ``--markdown``, the table kept in docs/reliability.md.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from tests.faults.harness import Node, Outcome
from tests.faults.scenarios import SCENARIOS, Scenario, by_name
from tests.peers.fault_proxy import FaultProxy
from tests.peers.moto_server import MotoServer


def run_one(scenario: Scenario, root: Path, moto: MotoServer, run: int = 1,
            scale: float = 1.0, timeout: float = 90) -> Outcome:
    """One run of one scenario in ``root`` (a fresh folder)."""
    with FaultProxy(moto.url, seed=run) as proxy:
        node = Node(root, moto, proxy, service=scenario.service,
                    input_opts=scenario.input_opts, output_opts=scenario.output_opts)
        started = time.monotonic()
        try:
            scenario.run(node, scale)
            outcome = node.outcome(scenario.name, run, started, timeout)
        finally:
            node.stop()
            node.join_writers(5)
        if outcome.lost:
            outcome.notes.append("agent log tail: " + node.log_text()[-1500:])
        return outcome


def markdown(outcomes: list[Outcome]) -> str:
    lines = ["| scenario | runs | lines per run | lost (each run) | duplicated (each run) | "
             "notes | what Fluent Bit does |", "|---|---|---|---|---|---|---|"]
    for s in SCENARIOS:
        mine = [o for o in outcomes if o.scenario == s.name]
        if not mine:
            continue
        lost = ", ".join(str(o.lost) for o in mine)
        dup = ", ".join(str(o.duplicated) for o in mine)
        notes = " / ".join(dict.fromkeys("; ".join(o.notes) for o in mine if o.notes))
        lines.append(f"| {s.title} | {len(mine)} | {mine[0].written} | {lost} | {dup} | "
                     f"{notes} | {s.fluent_bit} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("names", nargs="*", help="scenarios to run (default: all)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    chosen = [by_name(n) for n in args.names] if args.names else list(SCENARIOS)
    outcomes: list[Outcome] = []
    with MotoServer(fast=True) as moto:
        for scenario in chosen:
            for run in range(1, args.runs + 1):
                root = Path(tempfile.mkdtemp(prefix=f"fault-{scenario.name}-"))
                try:
                    o = run_one(scenario, root, moto, run, args.scale)
                finally:
                    shutil.rmtree(root, ignore_errors=True)
                outcomes.append(o)
                print(o.row(), flush=True)
    if args.markdown:
        print(markdown(outcomes))


if __name__ == "__main__":
    main()
