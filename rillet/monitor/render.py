"""What the monitoring endpoints say, with Fluent Bit's shapes and metric names.

- ``/api/v1/metrics``: ``{"input": {name: counters}, "filter": {...}, "output": {...}}``.
- ``/api/v1/metrics/prometheus``: ``fluentbit_<kind>_<counter>_total{name="..."} V TIMESTAMP_MS``
  sorted by line, a HELP/TYPE pair per metric, then ``process_start_time_seconds`` and
  ``fluentbit_build_info{version,edition} 1`` (plus ``fluentbit_uptime``).
- ``/api/v2/metrics/prometheus``: Fluent Bit's cmetrics names (``fluentbit_uptime{hostname}``,
  ``fluentbit_build_info{hostname,version,os}``, ``fluentbit_hot_reloaded_times``,
  ``fluentbit_input_ingestion_paused``, ``fluentbit_input_storage_*``, ``fluentbit_storage_*``,
  ``fluentbit_output_latency_seconds`` histogram with ``input``/``output`` labels, ...) and
  rillet's own gauges under ``rillet_`` (seconds since each output's last success, pending
  records, stalled outputs, time paused per input, bytes behind per tailed file).
- ``/api/v2/metrics``: the same samples in cmetrics' text format
  (``<RFC3339 time> name{labels} = value``).
"""

from __future__ import annotations

import math
import platform
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from rillet import __version__

if TYPE_CHECKING:
    from rillet.engine.engine import Engine

VERSION = __version__
EDITION = "Community"
FLAGS = ["FLB_HAVE_METRICS", "FLB_HAVE_HTTP_SERVER", "FLB_HAVE_PARSER", "FLB_HAVE_REGEX",
         "FLB_HAVE_RECORD_ACCESSOR", "FLB_HAVE_HOT_RELOAD"]
HOSTNAME = socket.gethostname()
OS = platform.system().lower()

_V1_HELP = {
    "input_bytes": "Number of input bytes.",
    "input_records": "Number of input records.",
    "output_proc_records": "Number of processed output records.",
    "output_proc_bytes": "Number of processed output bytes.",
    "output_errors": "Number of output errors.",
    "output_retries": "Number of output retries.",
    "output_retries_failed": "Number of abandoned batches because the maximum number of "
                             "re-tries was reached.",
    "output_dropped_records": "Number of dropped records.",
    "output_retried_records": "Number of retried records.",
    "filter_records": "Number of records processed by the filter.",
    "filter_bytes": "Number of bytes processed by the filter.",
    "filter_add_records": "Number of records added by the filter.",
    "filter_drop_records": "Number of records dropped by the filter.",
    "filter_drop_bytes": "Number of bytes dropped by the filter.",
}


def human_size(n: int) -> str:
    """Fluent Bit's human-readable byte sizes (1024 based): ``0b``, ``512b``, ``4.9M``."""
    if n < 1024:
        return f"{n}b"
    value = float(n)
    for unit in ("K", "M", "G", "T", "P"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f}{unit}"
    return f"{value:.1f}E"


def uptime_hr(seconds: int) -> str:
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)

    def s(n: int) -> str:
        return "s" if n > 1 else ""
    return (f"Fluent Bit has been running:  {days} day{s(days)}, {hours} hour{s(hours)}, "
            f"{minutes} minute{s(minutes)} and {secs} second{s(secs)}")


# -- JSON ---------------------------------------------------------------------------------------

def metrics_v1(engine: Engine | None) -> dict[str, dict[str, dict[str, int]]]:
    if engine is None:
        return {"input": {}, "filter": {}, "output": {}}
    return engine.pipeline.metrics.snapshot()


def input_lag(engine: Engine | None) -> dict[str, dict[str, int]]:
    """Per input, bytes behind per file, from the optional ``lag()`` plugin hook
    (``bytes_behind()`` is accepted too). A failing hook is skipped, never fatal."""
    out: dict[str, dict[str, int]] = {}
    if engine is None:
        return out
    for rt in engine.inputs:
        plugin = rt.inst.plugin
        hook = getattr(plugin, "lag", None) or getattr(plugin, "bytes_behind", None)
        if not callable(hook):
            continue
        try:
            lag = hook()
        except Exception:
            rt.inst.log.debug("lag() failed", exc_info=True)
            continue
        if isinstance(lag, dict):
            out[rt.inst.name] = {str(k): int(v) for k, v in lag.items()}
    return out


def pipeline_state(engine: Engine | None, now: float | None = None) -> dict[str, Any]:
    """rillet's ``/api/v2/pipeline``: counters plus live state per instance (``rillet top``)."""
    now = time.time() if now is None else now
    metrics = metrics_v1(engine)
    inputs: dict[str, Any] = {}
    outputs: dict[str, Any] = {}
    if engine is not None:
        lag = input_lag(engine)
        for name, st in engine.input_state().items():
            files = lag.get(name, {})
            inputs[name] = {**metrics["input"].get(name, {}), "paused": st["paused"],
                            "paused_seconds": round(st["paused_seconds"], 3),
                            "inflight_bytes": st["inflight_bytes"],
                            "mem_buf_limit": st["mem_buf_limit"],
                            "bytes_behind": sum(files.values()), "files": files}
        for name, ost in engine.output_states.items():
            since = ost.last_success or engine.started_at
            outputs[name] = {**metrics["output"].get(name, {}), "pending_records": ost.pending,
                             "last_success": ost.last_success or None,
                             "seconds_since_last_success": round(max(0.0, now - since), 3)}
    return {"time": now, "input": inputs, "filter": metrics["filter"], "output": outputs}


# -- Prometheus text ---------------------------------------------------------------------------

def _esc(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{k}="{_esc(v)}"' for k, v in pairs)
    return "{" + inner + "}" if inner else ""


def _num(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def prometheus_v1(engine: Engine | None, start_time: float, now: float | None = None) -> str:
    now = time.time() if now is None else now
    stamp = str(int(now * 1000))
    lines: list[str] = []
    for kind, group in metrics_v1(engine).items():
        for name, counters in group.items():
            for metric, value in counters.items():
                lines.append(f"fluentbit_{kind}_{metric}_total{_labels([('name', name)])} "
                             f"{value} {stamp}")
    lines.sort()
    out: list[str] = []
    previous = ""
    for line in lines:
        family = line[:line.index("{")]
        if family != previous:
            previous = family
            key = family[len("fluentbit_"):-len("_total")]
            help_text = _V1_HELP.get(key, "Fluent Bit metric.")
            out.append(f"# HELP {family} {help_text}")
            out.append(f"# TYPE {family} counter")
        out.append(line)
    out += ["# HELP fluentbit_uptime Number of seconds that Fluent Bit has been running.",
            "# TYPE fluentbit_uptime counter",
            f"fluentbit_uptime {int(now - start_time)}",
            "# HELP process_start_time_seconds Start time of the process since unix epoch in "
            "seconds.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {int(start_time)}",
            "# HELP fluentbit_build_info Build version information.",
            "# TYPE fluentbit_build_info gauge",
            f"fluentbit_build_info{_labels([('version', VERSION), ('edition', EDITION)])} 1"]
    return "\n".join(out) + "\n"


@dataclass
class _Family:
    name: str
    type: str
    help: str
    samples: list[tuple[str, list[tuple[str, str]], float]] = field(default_factory=list)

    def add(self, value: float, labels: list[tuple[str, str]] | None = None,
            suffix: str = "") -> None:
        self.samples.append((self.name + suffix, labels or [], value))


@dataclass
class AgentInfo:
    """What the v2 metrics need to know about the agent around the engine."""

    start_time: float
    reloads: int = 0
    reload_failures: int = 0
    ready: bool = False
    stall_timeout: float = 0.0


def families_v2(engine: Engine | None, info: AgentInfo, now: float | None = None) -> list[_Family]:
    now = time.time() if now is None else now
    host = [("hostname", HOSTNAME)]
    fams: list[_Family] = []

    def fam(name: str, type_: str, help_: str) -> _Family:
        f = _Family(name, type_, help_)
        fams.append(f)
        return f

    fam("fluentbit_uptime", "counter", "Number of seconds that Fluent Bit has been running.") \
        .add(int(now - info.start_time), host)
    fam("fluentbit_process_start_time_seconds", "gauge",
        "Seconds since the epoch when Fluent Bit started.").add(int(info.start_time), host)
    fam("fluentbit_build_info", "gauge", "Build version information.") \
        .add(int(info.start_time), [*host, ("version", VERSION), ("os", OS)])
    fam("fluentbit_hot_reloaded_times", "gauge", "Collect the count of hot reloaded times.") \
        .add(info.reloads, host)
    fam("rillet_hot_reload_failures_total", "counter",
        "Hot reloads refused because the new configuration was invalid or did not start.") \
        .add(info.reload_failures)
    fam("rillet_ready", "gauge", "1 once inputs run and outputs have started.") \
        .add(1 if info.ready else 0)

    metrics = metrics_v1(engine)
    # Counters per kind, with Fluent Bit's names (and plugin-specific ones such as tail's
    # files_opened) -> fluentbit_<kind>_<counter>_total{name}.
    for kind in ("input", "filter", "output"):
        by_metric: dict[str, _Family] = {}
        for name, counters in metrics[kind].items():
            for metric, value in counters.items():
                f = by_metric.get(metric)
                if f is None:
                    f = by_metric[metric] = fam(f"fluentbit_{kind}_{metric}_total", "counter",
                                                _V1_HELP.get(f"{kind}_{metric}",
                                                             "Fluent Bit metric."))
                f.add(value, [("name", name)])
    if engine is None:
        return fams

    paused = fam("fluentbit_input_ingestion_paused", "gauge",
                 "Is the input paused or not?")
    overlimit = fam("fluentbit_input_storage_overlimit", "gauge",
                    "Is the input memory usage overlimit?")
    mem = fam("fluentbit_input_storage_memory_bytes", "gauge", "Memory bytes used by the chunks.")
    chunks = fam("fluentbit_input_storage_chunks", "gauge", "Total number of chunks.")
    up = fam("fluentbit_input_storage_chunks_up", "gauge", "Total number of chunks up in memory.")
    down = fam("fluentbit_input_storage_chunks_down", "gauge",
               "Total number of chunks down in the filesystem.")
    busy = fam("fluentbit_input_storage_chunks_busy", "gauge",
               "Total number of chunks in a busy state.")
    busy_bytes = fam("fluentbit_input_storage_chunks_busy_bytes", "gauge",
                     "Total number of bytes used by chunks in a busy state.")
    paused_s = fam("rillet_input_paused_seconds_total", "counter",
                   "Seconds the input has spent paused by Mem_Buf_Limit.")
    behind = fam("rillet_input_bytes_behind", "gauge",
                 "Bytes of a file not read yet (inputs that report it, e.g. tail).")
    from rillet.engine.storage.report import chunk_counts

    counts = chunk_counts(engine)
    totals = [0, 0, 0]  # memory chunks, filesystem chunks up, down
    for name, st in engine.input_state().items():
        label = [("name", name)]
        n_mem, n_up, n_down, nbusy, nbusy_bytes = counts.get(name, (0, 0, 0, 0, 0))
        totals[0] += n_mem
        totals[1] += n_up
        totals[2] += n_down
        paused.add(1 if st["paused"] else 0, label)
        overlimit.add(1 if st["paused"] else 0, label)
        mem.add(st["inflight_bytes"], label)
        chunks.add(n_mem + n_up + n_down, label)
        up.add(n_mem + n_up, label)
        down.add(n_down, label)
        busy.add(nbusy, label)
        busy_bytes.add(nbusy_bytes, label)
        paused_s.add(round(st["paused_seconds"], 6), label)
    for name, files in input_lag(engine).items():
        for path, value in sorted(files.items()):
            behind.add(value, [("name", name), ("file", path)])
    for fname, value in (("fluentbit_storage_chunks", sum(totals)),
                         ("fluentbit_storage_mem_chunks", totals[0]),
                         ("fluentbit_storage_fs_chunks", totals[1] + totals[2]),
                         ("fluentbit_storage_fs_chunks_up", totals[1]),
                         ("fluentbit_storage_fs_chunks_down", totals[2])):
        fam(fname, "gauge", "Storage layer chunks.").add(value)

    capacity = fam("fluentbit_output_chunk_available_capacity_percent", "gauge",
                   "Available chunk capacity (percent).")
    upstream_total = fam("fluentbit_output_upstream_total_connections", "gauge",
                         "Total connection count.")
    upstream_busy = fam("fluentbit_output_upstream_busy_connections", "gauge",
                        "Busy connection count.")
    latency = fam("fluentbit_output_latency_seconds", "histogram",
                  "End-to-end latency in seconds")
    pending = fam("rillet_output_pending_records", "gauge",
                  "Records dispatched to the output and not final yet.")
    since = fam("rillet_output_last_success_age_seconds", "gauge",
                "Seconds since the output last delivered records (since start if never).")
    stamp = fam("rillet_output_last_success_timestamp_seconds", "gauge",
                "Unix time of the output's last successful delivery (0 = never).")
    stalled = fam("rillet_output_stalled", "gauge",
                  "1 when records are pending and nothing was delivered for HC_Stall_Timeout.")
    for out in engine.pipeline.outputs:
        label = [("name", out.name)]
        capacity.add(100, label)
        hook = getattr(out.plugin, "upstream_connections", None)
        if callable(hook):
            try:
                total, nbusy = hook()
                upstream_total.add(int(total), label)
                upstream_busy.add(int(nbusy), label)
            except Exception:
                out.log.debug("upstream_connections() failed", exc_info=True)
        ost = engine.output_states[out.name]
        for input_name, hist in sorted(ost.latency.items()):
            hl = [("input", input_name), ("output", out.name)]
            for bound, count in zip((*hist.bounds, math.inf), hist.cumulative(), strict=True):
                le = "+Inf" if math.isinf(bound) else repr(float(bound))
                latency.add(count, [("le", le), *hl], "_bucket")
            latency.add(hist.sum, hl, "_sum")
            latency.add(hist.count, hl, "_count")
        pending.add(ost.pending, label)
        last = ost.last_success or engine.started_at
        since.add(round(max(0.0, now - last), 3), label)
        stamp.add(round(ost.last_success, 3), label)
        is_stalled = (info.stall_timeout > 0 and ost.pending > 0
                      and now - max(ost.last_success, ost.pending_since) > info.stall_timeout)
        stalled.add(1 if is_stalled else 0, label)
    return [f for f in fams if f.samples or f.type == "histogram"]


def prometheus_v2(engine: Engine | None, info: AgentInfo, now: float | None = None) -> str:
    out: list[str] = []
    for f in families_v2(engine, info, now):
        if not f.samples:
            continue
        out.append(f"# HELP {f.name} {f.help}")
        out.append(f"# TYPE {f.name} {f.type}")
        for name, labels, value in f.samples:
            out.append(f"{name}{_labels(labels)} {_num(value)}")
    return "\n".join(out) + "\n"


def cmetrics_text(engine: Engine | None, info: AgentInfo, now: float | None = None) -> str:
    """cmetrics' text encoding: ``2026-11-28T10:00:00.000000000Z name{labels} = value``."""
    now = time.time() if now is None else now
    ts = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000Z"
    out: list[str] = []
    for f in families_v2(engine, info, now):
        for name, labels, value in f.samples:
            out.append(f"{ts} {name}{_labels(labels)} = {_num(value)}")
    return "\n".join(out) + "\n"
