"""Every row of the fault matrix once (``python -m tests.faults.run`` runs each 3 times or more
for docs/reliability.md). Goal in every row: nothing lost; duplicates only where a kill cut a
batch in flight."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.faults.run import run_one
from tests.faults.scenarios import SCENARIOS, Scenario
from tests.peers.fixtures import moto_server  # noqa: F401
from tests.peers.moto_server import MotoServer

# Rows where duplicates are expected: batches on the wire when the agent was killed.
KILLS = {"kill9_ingest", "kill9_delivery", "kill9_ingest_fs", "kill9_delivery_fs"}


@pytest.mark.timeout(150)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_nothing_lost(scenario: Scenario, tmp_path: Path,
                      moto_server: MotoServer) -> None:  # noqa: F811
    outcome = run_one(scenario, tmp_path, moto_server)
    assert outcome.lost == 0, outcome.row()
    assert outcome.written > 0
    if scenario.name in KILLS:
        # At most what the killed agents had in flight: a few chunks, never the whole run.
        assert outcome.duplicated < outcome.written // 2, outcome.row()
    else:
        assert outcome.duplicated == 0, outcome.row()
    if scenario.name == "corrupt_chunk":
        # The damaged file is kept for inspection, not deleted or replayed.
        assert list((tmp_path / "storage" / "quarantine").glob("*/*")), outcome.row()
        assert outcome.delivered == outcome.written - 1, outcome.row()
    if scenario.name == "api_down_at_start":
        # Unenriched while the API was down, enriched once it came up.
        assert 0 < outcome.enriched < outcome.delivered, outcome.row()
