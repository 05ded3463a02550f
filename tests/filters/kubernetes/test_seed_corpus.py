"""The seed pipeline (seed-pipeline.md §2: tail -> kubernetes -> an output) over generated node
logs, run as the real agent process, compared with what Fluent Bit made of the same corpus
(``shared/bench/fluentbit_sample_output.jsonl``: 9 records of ``gen_corpus.py --pods 50``).

The API server is replaced by the corpus' ``meta/`` folder (Kube_Meta_Preload_Cache_Dir) and
CloudWatch by the file output (one file per tag, one JSON record per line).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.shared_data import SHARED

GEN = SHARED / "bench" / "gen_corpus.py"
SAMPLE = SHARED / "bench" / "fluentbit_sample_output.jsonl"
ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.skipif(not GEN.is_file(), reason="shared/ bench data absent")

NGINX_FIELDS = {"remote", "host", "user", "method", "path", "code", "size", "referer", "agent"}


def _generate(out: Path, *args: str) -> dict[str, Any]:
    subprocess.run([sys.executable, str(GEN), str(out), *args], check=True,
                   stdout=subprocess.DEVNULL)
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return manifest


def _run_agent(corpus: Path, work: Path) -> dict[str, list[dict[str, Any]]]:
    """The seed configuration, pointed at the corpus; returns records per log file name."""
    log_dir = corpus / "var" / "log" / "containers"
    prefix = "kube." + str(log_dir).strip("/").replace("/", ".") + "."
    out = work / "out"
    out.mkdir()
    conf = work / "seed.conf"
    conf.write_text(f"""\
[SERVICE]
    Flush      0.2
    Grace      5
    Log_Level  error

[INPUT]
    Name              tail
    Tag               kube.*
    Path              {log_dir}/*.log
    DB                {work / "flb_kube.db"}
    Parser            docker
    Docker_Mode       On
    Mem_Buf_Limit     5MB
    Skip_Long_Lines   On
    Refresh_Interval  10
    Read_From_Head    On
    Exit_On_Eof       On

[FILTER]
    Name                        kubernetes
    Match                       kube.*
    Kube_URL                    http://127.0.0.1:9
    Kube_Tag_Prefix             {prefix}
    Kube_Meta_Preload_Cache_Dir {corpus / "meta"}
    Merge_Log                   On
    Merge_Log_Key               data
    K8S-Logging.Parser          On
    K8S-Logging.Exclude         On

[OUTPUT]
    Name    file
    Match   **
    Path    {out}
    Format  plain
""")
    subprocess.run([sys.executable, "-m", "rillet", "-c", str(conf)], cwd=ROOT, check=True,
                   timeout=120, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    by_file: dict[str, list[dict[str, Any]]] = {}
    for path in out.iterdir():
        name = path.name[len(prefix):]
        by_file[name] = [json.loads(line) for line in path.read_text().splitlines()]
    return by_file


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """10 pods, 2,000 lines, a third of the pods annotated fluentbit.io/exclude."""
    work = tmp_path_factory.mktemp("seed_small")
    manifest = _generate(work / "corpus", "--pods", "10", "--lines", "2000",
                         "--exclude-frac", "0.3")
    return manifest, _run_agent(work / "corpus", work)


@pytest.fixture(scope="module")
def fifty(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[dict[str, Any]]]:
    """The pods of Fluent Bit's sample (``--pods 50``), 5,000 lines."""
    work = tmp_path_factory.mktemp("seed_fifty")
    _generate(work / "corpus", "--pods", "50", "--lines", "5000")
    return _run_agent(work / "corpus", work)


def test_records_per_pod_kind(small: tuple[dict[str, Any], dict[str, Any]]) -> None:
    manifest, by_file = small
    files = manifest["files"]
    assert any(f["exclude"] for f in files) and any(not f["exclude"] for f in files)
    for f in files:
        recs = by_file.get(f["file"], [])
        if f["exclude"]:
            assert recs == [], f"excluded pod {f['pod']} delivered records"
            continue
        # Every record but the few longer than Buffer_Max_Size (Skip_Long_Lines On).
        assert f["records"] * 0.97 <= len(recs) <= f["records"], f["file"]
        for rec in recs:
            assert list(rec)[:3] == ["log", "stream", "time"]
            assert list(rec)[-1] == "kubernetes"
            k = rec["kubernetes"]
            assert (k["pod_name"], k["namespace_name"], k["container_name"]) == \
                (f["pod"], f["namespace"], f["container"])
            log = rec["log"]
            if f["kind"] == "nginx" and log[:1].isdigit() and " - " in log[:40]:
                assert set(rec["data"]) <= NGINX_FIELDS and {"remote", "code"} <= set(rec["data"])
            elif f["kind"] == "json" and log.startswith("{"):
                want = json.loads(log)
                assert rec["data"] == {key: v.rstrip("\n") if isinstance(v, str) else v
                                       for key, v in want.items()}
            elif f["kind"] == "text":
                assert "data" not in rec


def test_same_records_as_fluent_bit(fifty: dict[str, list[dict[str, Any]]]) -> None:
    """Pod by pod: the same kubernetes block, byte for byte, and records of the same shape.
    (The sample's lines themselves carry other timestamps than any corpus generated with
    ``--pods 50``, so whole records cannot be matched line for line.)"""
    sample = [json.loads(line) for line in SAMPLE.read_text().splitlines()]
    ours_by_pod: dict[str, list[dict[str, Any]]] = {}
    for recs in fifty.values():
        for rec in recs:
            ours_by_pod.setdefault(rec["kubernetes"]["pod_name"], []).append(rec)
    for fb in sample:
        pod = fb["kubernetes"]["pod_name"]
        ours = ours_by_pod.get(pod)
        assert ours, f"no records for pod {pod}"
        # The kubernetes block is the same, byte for byte (key order included).
        assert json.dumps(ours[0]["kubernetes"]) == json.dumps(fb["kubernetes"])
        if "data" not in fb:
            plain = [r for r in ours if "data" not in r]
            assert plain and list(plain[0]) == list(fb) == ["log", "stream", "time",
                                                            "kubernetes"]
        elif fb["log"].startswith("{"):
            # JSON: data is the decoded log, trimmed (checked on Fluent Bit's record too).
            assert fb["data"] == _trimmed(fb["log"])
            mine = [r for r in ours if r["log"].startswith("{")]
            assert mine and list(mine[0]) == list(fb)
            assert all(r["data"] == _trimmed(r["log"]) for r in mine)
        else:
            # nginx: the same fields in the same order.
            mine = [r for r in ours if "data" in r and set(r["data"]) == set(fb["data"])]
            assert mine and list(mine[0]) == list(fb)
            assert list(mine[0]["data"]) == list(fb["data"])
    assert len(sample) == 9


def _trimmed(log: str) -> dict[str, Any]:
    obj: dict[str, Any] = json.loads(log)
    return {k: v.rstrip("\n") if isinstance(v, str) else v for k, v in obj.items()}
