"""moto's server as a subprocess on a free loopback port (rillet.devtools.moto_server), plus the
benchmarks' fast launcher."""

from __future__ import annotations

from pathlib import Path

from rillet.devtools import moto_server as _base
from rillet.devtools.moto_server import TEST_ENV, free_port, read_log_events

__all__ = ["REGION", "TEST_ENV", "MotoServer", "free_port", "read_log_events"]

REGION = "us-east-1"


class MotoServer(_base.MotoServer):
    def __init__(self, port: int | None = None, fast: bool = False) -> None:
        """``fast``: run it through :mod:`tests.peers.moto_fast` (benchmarks)."""
        launcher = [str(Path(__file__).with_name("moto_fast.py"))] if fast \
            else ["-m", "moto.server"]
        super().__init__(port, launcher)
        self.fast = fast
