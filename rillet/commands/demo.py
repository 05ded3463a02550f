"""``rillet demo``: the seed pipeline end to end on this machine (see rillet.demo.run)."""

from __future__ import annotations

import argparse

from rillet.demo.run import Demo, Options


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="rillet demo",
        description="Run the seed pipeline (tail -> kubernetes -> CloudWatch Logs) on generated "
                    "node logs against a local Kubernetes API stand-in and moto's server, print "
                    "what arrived, and stop everything.")
    d = Options()
    p.add_argument("--keep", action="store_true",
                   help="leave the servers running and print how to query them (Ctrl-C stops)")
    p.add_argument("-n", "--requests", type=int, default=d.requests,
                   help=f"nginx requests from the load generator (default {d.requests})")
    p.add_argument("-c", "--concurrency", type=int, default=d.concurrency,
                   help=f"requests in flight (default {d.concurrency})")
    p.add_argument("--lines", type=int, default=d.lines,
                   help=f"lines per JSON application pod (default {d.lines})")
    p.add_argument("--timeout", type=float, default=d.timeout,
                   help=f"seconds to wait for delivery (default {d.timeout:.0f})")
    p.add_argument("--seed", type=int, default=None, help="random seed for names and lines")
    a = p.parse_args(argv)
    if a.requests < 1 or a.concurrency < 1 or a.lines < 0:
        p.error("--requests and --concurrency must be >= 1, --lines >= 0")
    return Demo(Options(requests=a.requests, concurrency=a.concurrency, lines=a.lines,
                        timeout=a.timeout, keep=a.keep, seed=a.seed)).run()
