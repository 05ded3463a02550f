"""Where the team's read-only reference data (``shared/``: Fluent Bit's conformance data, the
seed configuration) is: beside the checkout (``../shared``), else ``/work/shared``, or where
``RILLET_SHARED`` points. Tests that need it skip when it is absent."""

from __future__ import annotations

import os
from pathlib import Path


def _find() -> Path:
    candidates = [os.environ.get("RILLET_SHARED", ""),
                  str(Path(__file__).resolve().parents[2] / "shared"), "/work/shared"]
    for c in candidates:
        if c and Path(c, "conformance").is_dir():
            return Path(c)
    return Path(candidates[1])


SHARED = _find()
CONFORMANCE = SHARED / "conformance" / "fluent-bit" / "tests"
