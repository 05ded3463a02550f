"""Every endpoint over a real socket, against a running engine: Fluent Bit's shapes and names."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import orjson
from prometheus_client.parser import text_string_to_metric_families

from rillet.engine.chunk import Batch
from rillet.engine.plugin import Status
from tests.engine.harness import wait_for
from tests.engine.plugins import STATE, Feed, Sink
from tests.monitor import plugins as mplugins
from tests.monitor.client import get_json, request
from tests.monitor.helpers import agent_running, make, port

OUTPUT_KEYS = {"proc_records", "proc_bytes", "errors", "retries", "retries_failed",
               "dropped_records", "retried_records"}


def families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(fams: dict[str, Any], family: str, metric: str, **labels: str) -> float:
    for s in fams[family].samples:
        if s.name == metric and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    raise AssertionError(f"no sample {metric} {labels} in {family}")


def feed_pipeline(key: str, **service: Any) -> Any:
    STATE[key] = Feed()
    STATE[key + "-out"] = Sink()
    return make(service, inputs=[{"name": "test_feed", "id": key, "tag": "app.x"}],
                filters=[{"name": "test_mark", "match": "app.*", "alias": "marker"}],
                outputs=[{"name": "test_sink", "id": key + "-out", "match": "app.*"}])


def test_every_endpoint_has_fluent_bit_shapes() -> None:
    async def main() -> None:
        async with agent_running(feed_pipeline("api")) as agent:
            p = port(agent)
            feed: Feed = STATE["api"]
            sink: Sink = STATE["api-out"]
            feed.put(Batch("app.x", [1, 2, 3], [{"a": 1}, {"a": 2}, {"drop": 1}], 30))
            await wait_for(lambda: len(sink.delivered) == 2)

            status, root = await get_json(p, "/")
            assert status == 200
            assert isinstance(root, dict)
            assert set(root["fluent-bit"]) == {"version", "edition", "flags"}
            assert root["fluent-bit"]["edition"] == "Community"

            status, up = await get_json(p, "/api/v1/uptime")
            assert status == 200 and isinstance(up, dict)
            assert isinstance(up["uptime_sec"], int)
            assert up["uptime_hr"].startswith("Fluent Bit has been running:  0 day, 0 hour, ")

            status, m = await get_json(p, "/api/v1/metrics")
            assert status == 200 and isinstance(m, dict)
            assert set(m) == {"input", "filter", "output"}
            assert m["input"]["test_feed.0"] == {"records": 3, "bytes": 30}
            assert m["filter"]["marker"]["records"] == 3
            assert m["filter"]["marker"]["drop_records"] == 1
            out = m["output"]["test_sink.0"]
            assert set(out) == OUTPUT_KEYS and out["proc_records"] == 2

            status, headers, body = await request(p, "/api/v1/metrics/prometheus")
            assert status == 200
            assert headers["content-type"] == "text/plain; version=0.0.4"
            text = body.decode()
            assert re.search(r'^fluentbit_input_records_total\{name="test_feed.0"\} 3 \d{13}$',
                             text, re.M)
            fams = families(text)
            assert sample(fams, "fluentbit_output_proc_records", "fluentbit_output_proc_records_"
                          "total", name="test_sink.0") == 2
            assert sample(fams, "fluentbit_filter_drop_records",
                          "fluentbit_filter_drop_records_total", name="marker") == 1
            assert fams["process_start_time_seconds"].type == "gauge"
            assert "fluentbit_build_info" in fams

            status, storage = await get_json(p, "/api/v1/storage")
            assert status == 200 and isinstance(storage, dict)
            assert set(storage["storage_layer"]["chunks"]) == {
                "total_chunks", "mem_chunks", "fs_chunks", "fs_chunks_up", "fs_chunks_down"}
            chunks = storage["input_chunks"]["test_feed.0"]
            assert set(chunks["status"]) == {"overlimit", "mem_size", "mem_limit"}
            assert chunks["status"]["overlimit"] is False
            assert set(chunks["chunks"]) == {"total", "up", "down", "busy", "busy_size"}

            status, _, body = await request(p, "/api/v1/health")
            assert (status, body) == (200, b"ok\n")
            status, health = await get_json(p, "/api/v2/health")
            assert status == 200
            assert health == {"status": "ok", "errors": 0, "retries_failed": 0,
                              "error_limit": 5, "retry_failure_limit": 5, "period_limit": 60,
                              "stalled_outputs": []}

            status, headers, body = await request(p, "/api/v2/metrics/prometheus")
            assert status == 200
            fams = families(body.decode())
            for name in ("fluentbit_uptime", "fluentbit_build_info",
                         "fluentbit_hot_reloaded_times", "fluentbit_input_ingestion_paused",
                         "fluentbit_output_latency_seconds", "fluentbit_input_storage_chunks",
                         "fluentbit_storage_chunks", "rillet_output_pending_records",
                         "rillet_output_last_success_age_seconds",
                         "rillet_input_paused_seconds"):
                assert name in fams, name
            assert fams["fluentbit_output_latency_seconds"].type == "histogram"
            buckets = [s.labels["le"] for s in fams["fluentbit_output_latency_seconds"].samples
                       if s.name.endswith("_bucket")]
            assert buckets == ["0.5", "1.0", "1.5", "2.5", "5.0", "10.0", "20.0", "30.0",
                               "+Inf"]
            assert sample(fams, "fluentbit_output_latency_seconds",
                          "fluentbit_output_latency_seconds_count", input="test_feed.0",
                          output="test_sink.0") == 1
            info = next(s for s in fams["fluentbit_build_info"].samples)
            assert set(info.labels) == {"hostname", "version", "os"}
            assert sample(fams, "fluentbit_input_records", "fluentbit_input_records_total",
                          name="test_feed.0") == 3
            assert sample(fams, "fluentbit_input_ingestion_paused",
                          "fluentbit_input_ingestion_paused", name="test_feed.0") == 0
            assert sample(fams, "rillet_output_pending_records", "rillet_output_pending_records",
                          name="test_sink.0") == 0

            status, _, body = await request(p, "/api/v2/metrics")
            assert status == 200
            lines = body.decode().splitlines()
            assert lines and all(
                re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{9}Z \w+(\{.*\})? = \S+$", line)
                for line in lines), lines[:3]
            assert any(' fluentbit_input_records_total{name="test_feed.0"} = 3' in line
                       for line in lines)

            assert await get_json(p, "/api/v2/reload") == (200, {"hot_reload_count": 0})
            status, ready = await get_json(p, "/api/v2/ready")
            assert (status, ready) == (200, {"status": "ready"})
            status, state = await get_json(p, "/api/v2/pipeline")
            assert status == 200 and isinstance(state, dict)
            assert state["output"]["test_sink.0"]["pending_records"] == 0
            assert state["input"]["test_feed.0"]["paused"] is False

            assert (await request(p, "/nope"))[0] == 404
            assert (await request(p, "/api/v1/metrics", "POST"))[0] == 405

    asyncio.run(main())


def test_health_and_storage_endpoints_need_their_options() -> None:
    async def main() -> None:
        load = feed_pipeline("opts", health_check="off", **{"storage.metrics": "off"})
        async with agent_running(load) as agent:
            p = port(agent)
            for path in ("/api/v1/health", "/api/v2/health", "/api/v1/storage"):
                assert (await request(p, path))[0] == 404, path
            assert await get_json(p, "/api/v2/reload") == (200, {"hot_reload_count": 0})
            status, _, raw = await request(p, "/api/v2/reload", "POST")
            assert status == 400
            assert orjson.loads(raw) == {"reload": "not enabled", "status": -1}

    asyncio.run(main())


def test_health_fails_on_errors_within_the_period() -> None:
    async def main() -> None:
        STATE["err"] = Feed()
        STATE["err-out"] = Sink(script=lambda chunk, n: Status.ERROR)
        load = make({"hc_errors_count": 2, "flush": 0.02},
                    inputs=[{"name": "test_feed", "id": "err", "tag": "t"}],
                    outputs=[{"name": "test_sink", "id": "err-out", "match": "*"}])
        async with agent_running(load) as agent:
            p = port(agent)
            feed: Feed = STATE["err"]
            for i in range(3):
                feed.put(Batch("t", [i], [{"i": i}], 5))
                await wait_for(lambda i=i: agent.engine is not None and agent.engine.pipeline
                               .metrics.groups["output"]["test_sink.0"]["errors"] == i + 1)
                if i < 2:
                    assert (await request(p, "/api/v1/health"))[0] == 200
            assert (await request(p, "/api/v1/health"))[:3:2] == (500, b"error\n")
            status, health = await get_json(p, "/api/v2/health")
            assert status == 500 and isinstance(health, dict)
            assert health["status"] == "error" and health["errors"] == 3

    asyncio.run(main())


async def _ack_server(state: dict[str, Any]) -> asyncio.Server:
    """Answers OK to each chunk (records counted); a proxy sits between it and the output."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            line = await reader.readline()
            if not line:
                return
            if line == b"END\n":
                writer.write(b"OK\n")
                await writer.drain()
            else:
                state["records"] += 1
    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def _proxy(target: int, state: dict[str, Any]) -> asyncio.Server:
    """Forwards both ways while state['answering'] is set; otherwise swallows everything."""
    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        while data := await src.read(65536):
            await state["answering"].wait()
            dst.write(data)
            await dst.drain()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target)
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer),
                             return_exceptions=True)
    return await asyncio.start_server(handle, "127.0.0.1", 0)


def test_health_turns_error_for_a_stalled_output_and_back() -> None:
    async def main() -> None:
        state: dict[str, Any] = {"records": 0, "answering": asyncio.Event()}
        state["answering"].set()
        server = await _ack_server(state)
        proxy = await _proxy(server.sockets[0].getsockname()[1], state)
        proxy_port = proxy.sockets[0].getsockname()[1]
        STATE["stall"] = Feed()
        load = make({"hc_stall_timeout": 1, "flush": 0.05},
                    inputs=[{"name": "test_feed", "id": "stall", "tag": "t"}],
                    outputs=[{"name": "test_tcp_ack", "port": proxy_port, "match": "*"}])
        async with agent_running(load) as agent:
            p = port(agent)
            feed: Feed = STATE["stall"]
            feed.put(Batch("t", [1], [{"n": 1}], 8))
            await wait_for(lambda: state["records"] == 1)
            assert (await request(p, "/api/v1/health"))[0] == 200

            state["answering"].clear()  # the proxy stops answering: the flush hangs
            feed.put(Batch("t", [2], [{"n": 2}], 8))
            await asyncio.sleep(0.3)
            assert (await request(p, "/api/v1/health"))[0] == 200  # not yet past the timeout
            await asyncio.sleep(1.2)
            assert (await request(p, "/api/v1/health"))[0] == 500
            status, health = await get_json(p, "/api/v2/health")
            assert status == 500 and isinstance(health, dict)
            assert health["stalled_outputs"] == ["test_tcp_ack.0"]
            assert health["errors"] == 0  # Fluent Bit's counters see nothing wrong
            _, _, body = await request(p, "/api/v2/metrics/prometheus")
            fams = families(body.decode())
            assert sample(fams, "rillet_output_stalled", "rillet_output_stalled",
                          name="test_tcp_ack.0") == 1
            assert sample(fams, "rillet_output_pending_records", "rillet_output_pending_records",
                          name="test_tcp_ack.0") == 1
            assert sample(fams, "rillet_output_last_success_age_seconds",
                          "rillet_output_last_success_age_seconds", name="test_tcp_ack.0") >= 1.0

            state["answering"].set()  # traffic flows again: delivered, healthy again
            await wait_for(lambda: state["records"] == 2, 5)
            await wait_for(lambda: agent.health_state().healthy, 5)
            assert (await request(p, "/api/v1/health"))[0] == 200
        proxy.close()
        server.close()

    asyncio.run(main())


def test_paused_time_and_bytes_behind_gauges() -> None:
    async def main() -> None:
        mplugins.LAG["lag"] = {"/var/log/containers/a.log": 1234, "/var/log/b.log": 0}
        STATE["pz-out"] = Sink()
        sink: Sink = STATE["pz-out"]
        sink.gate = asyncio.Event()  # the output holds every chunk: the input pauses
        load = make({"flush": 0.02},
                    inputs=[{"name": "test_lagging", "id": "lag", "tag": "t",
                             "mem_buf_limit": "10", "interval": 0.01}],
                    outputs=[{"name": "test_sink", "id": "pz-out", "match": "*"}])
        async with agent_running(load) as agent:
            p = port(agent)
            await wait_for(lambda: bool(agent.engine and agent.engine.inputs[0].paused))
            await asyncio.sleep(0.3)
            _, _, body = await request(p, "/api/v2/metrics/prometheus")
            fams = families(body.decode())
            assert sample(fams, "fluentbit_input_ingestion_paused",
                          "fluentbit_input_ingestion_paused", name="test_lagging.0") == 1
            assert sample(fams, "rillet_input_paused_seconds", "rillet_input_paused_seconds_total",
                          name="test_lagging.0") >= 0.25
            assert sample(fams, "rillet_input_bytes_behind", "rillet_input_bytes_behind",
                          name="test_lagging.0", file="/var/log/containers/a.log") == 1234
            _, storage = await get_json(p, "/api/v1/storage")
            assert isinstance(storage, dict)
            assert storage["input_chunks"]["test_lagging.0"]["status"]["overlimit"] is True
            _, state = await get_json(p, "/api/v2/pipeline")
            assert isinstance(state, dict)
            assert state["input"]["test_lagging.0"]["bytes_behind"] == 1234
            assert state["input"]["test_lagging.0"]["paused"] is True
            sink.gate.set()

    asyncio.run(main())
