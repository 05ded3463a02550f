"""ApiSource against the HTTPS API stand-in: watch, GET on miss, negative caching, tokens, TLS."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from rillet.config.model import Section
from rillet.config.options import resolve
from rillet.devtools.kube_api import make_test_certs
from rillet.engine.metrics import Counters
from rillet.filters.kubernetes.api import API_OPTIONS, ApiSource, check_api_options
from rillet.filters.kubernetes.source import Entry
from tests.peers.kube_api import KubeApiPeer, pod

LOG = logging.getLogger("rillet.filter:kubernetes:test")


def make_source(peer: KubeApiPeer, *, namespaces: bool = False,
                **overrides: str) -> tuple[ApiSource, Counters]:
    counters = Counters()
    return ApiSource(peer.options(**overrides), LOG, counters, namespaces=namespaces), counters


async def until(check: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll ``check`` (a lookup) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met in {timeout}s (last: {value!r})")
        await asyncio.sleep(0.01)


def found(source: ApiSource, ns: str, name: str) -> Callable[[], Entry | None]:
    def check() -> Entry | None:
        entry = source.lookup("pod", ns, name)
        return entry if entry is not None and entry.obj is not None else None
    return check


def negative(source: ApiSource, ns: str, name: str) -> Callable[[], Entry | None]:
    def check() -> Entry | None:
        entry = source.lookup("pod", ns, name)
        return entry if entry is not None and entry.obj is None else None
    return check


def run(source: ApiSource, body: Callable[[], Awaitable[None]], wait: float = 3.0) -> None:
    async def main() -> None:
        await source.start(wait)
        try:
            await body()
        finally:
            await source.stop()
    asyncio.run(main())


def test_watch_knows_node_pods_at_start(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.add_pod(pod("shop", "web-1", annotations={"team": "a"}))
    srv.add_pod(pod("shop", "elsewhere", node="node-b"))
    source, counters = make_source(kube_api)

    async def body() -> None:
        entry = source.lookup("pod", "shop", "web-1")
        assert entry is not None and entry.obj is not None
        assert entry.obj["metadata"]["annotations"] == {"team": "a"}
        # the same entry object until something changes
        assert source.lookup("pod", "shop", "web-1") is entry
        # another node's pod: not listed, fetched once on a miss
        assert source.lookup("pod", "shop", "elsewhere") is None
        other = await until(found(source, "shop", "elsewhere"))
        assert other.obj["spec"]["nodeName"] == "node-b"

    run(source, body)
    assert srv.count("/api/v1/pods", watch=False) == 1
    assert srv.count("/api/v1/namespaces/shop/pods/elsewhere") == 1
    assert srv.count("/api/v1/namespaces/shop/pods/web-1") == 0
    list_query = next(r.query for r in srv.request_log() if r.path == "/api/v1/pods")
    assert "fieldSelector=spec.nodeName%3Dnode-a" in list_query
    assert counters["kube_cache_hits"] >= 2


def test_pod_created_after_its_first_lookup(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    source, counters = make_source(kube_api)

    async def body() -> None:
        assert source.lookup("pod", "shop", "late") is None
        miss = await until(negative(source, "shop", "late"))
        assert 'pods "late" not found' in miss.error
        for _ in range(50):  # asking again is cheap: no request per lookup
            source.lookup("pod", "shop", "late")
        srv.add_pod(pod("shop", "late"))
        entry = await until(found(source, "shop", "late"))
        assert entry.version > miss.version

    run(source, body)
    assert srv.count("/api/v1/namespaces/shop/pods/late") <= 2
    assert counters["kube_cache_negative"] >= 50


def test_deleted_pod_kept_for_retention_then_gone(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.add_pod(pod("shop", "web-1"))
    source, _ = make_source(kube_api, kube_deleted_pod_retention="0.4")

    async def body() -> None:
        entry = await until(found(source, "shop", "web-1"))
        srv.delete_pod("shop", "web-1")
        await asyncio.sleep(0.2)  # the DELETED event has arrived by now
        kept = source.lookup("pod", "shop", "web-1")
        assert kept is not None and kept.obj is not None
        assert kept.obj["metadata"]["uid"] == entry.obj["metadata"]["uid"]
        slot = source.tables["pod"].slots[("shop", "web-1")]
        assert slot.deleted_at > 0
        await asyncio.sleep(0.5)
        # forgotten: asking again fetches it, and the API says it is gone
        gone = await until(negative(source, "shop", "web-1"))
        assert "not found" in gone.error

    run(source, body)


def test_annotation_change_bumps_version(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.add_pod(pod("shop", "web-1", annotations={"fluentbit.io/exclude": "false"}))
    source, counters = make_source(kube_api)

    async def body() -> None:
        first = await until(found(source, "shop", "web-1"))
        srv.update_pod("shop", "web-1", annotations={"fluentbit.io/exclude": "true"})

        def changed() -> Entry | None:
            e = source.lookup("pod", "shop", "web-1")
            return e if e is not None and e.version != first.version else None
        second = await until(changed)
        assert second.obj is not None
        assert second.obj["metadata"]["annotations"]["fluentbit.io/exclude"] == "true"
        # a MODIFIED event that changes nothing but the resourceVersion keeps the version
        srv.update_pod("shop", "web-1", annotations={})
        events = counters["kube_watch_events"]
        await until(lambda: counters["kube_watch_events"] > events)
        assert source.lookup("pod", "shop", "web-1") is second

    run(source, body)
    assert srv.count("/api/v1/namespaces/shop/pods/web-1") == 0


def test_410_gone_on_watch_relists(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.add_pod(pod("shop", "web-1"))
    source, counters = make_source(kube_api)

    async def body() -> None:
        await until(found(source, "shop", "web-1"))
        await until(lambda: srv.open_watches == 1)
        # ERROR event with code 410 on the open watch
        srv.compact()
        await until(lambda: counters["kube_relists"] == 1)
        srv.add_pod(pod("shop", "web-2"))
        await until(found(source, "shop", "web-2"))
        # HTTP 410 when the watch reconnects after a drop with a compacted version
        srv.gone_as_http = True
        srv.stop()
        srv.compact()
        srv.add_pod(pod("shop", "web-3"))
        srv.start()
        await until(lambda: counters["kube_relists"] == 2)
        await until(found(source, "shop", "web-3"))

    run(source, body)
    assert srv.count("/api/v1/pods", watch=True, status=410) == 1
    assert srv.count("/api/v1/pods", watch=False) == 3


def test_token_rotation(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.add_pod(pod("shop", "web-1"))
    source, counters = make_source(kube_api)

    async def body() -> None:
        await until(found(source, "shop", "web-1"))
        kube_api.rotate_token("rotated-token")
        # the old token is refused now; the source reads the file again after a 401
        assert source.lookup("pod", "shop", "other") is None
        await until(negative(source, "shop", "other"))
        srv.drop_watches()
        srv.add_pod(pod("shop", "web-2"))
        await until(found(source, "shop", "web-2"))

    run(source, body)
    log = srv.request_log()
    refused = [r for r in log if r.status == 401]
    assert refused and all(r.token == "rillet-test-token" for r in refused)
    after = log[log.index(refused[0]) + 1:]
    assert any(r.token == "rotated-token" and r.status == 200 for r in after)
    other = [r for r in log if r.path.endswith("/pods/other")]
    assert [r.status for r in other] == [401, 404]
    assert counters["kube_token_reloads"] >= 2  # the first read and the rotation


def test_token_reread_every_ttl(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    source, _ = make_source(kube_api, kube_token_ttl="0.1", kube_watch="off")

    async def body() -> None:
        kube_api.rotate_token("second", keep_old=True)
        await asyncio.sleep(0.15)
        srv.add_pod(pod("shop", "a"))
        await until(found(source, "shop", "a"))

    run(source, body)
    assert [r.token for r in srv.request_log()] == ["second"]
    assert srv.count(status=401) == 0


def test_token_command(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.set_tokens("from-command")
    srv.add_pod(pod("shop", "a"))
    source, _ = make_source(kube_api, kube_token_command="echo from-command",
                            kube_token_file=str(kube_api.folder / "absent"))
    run(source, lambda: until(found(source, "shop", "a")))
    assert {r.token for r in srv.request_log()} == {"from-command"}


def test_ca_mismatch_is_a_clear_error(kube_api: KubeApiPeer, tmp_path: Path) -> None:
    srv = kube_api.server
    srv.add_pod(pod("shop", "web-1"))
    other_ca = make_test_certs(tmp_path / "other").ca
    source, counters = make_source(kube_api, kube_ca_file=str(other_ca))

    async def body() -> None:
        entry = await until(negative(source, "shop", "web-1"))
        assert "certificate verif" in entry.error
        assert "kube_ca_file" in entry.error

    run(source, body, wait=1.0)
    assert srv.count() == 0  # no TLS handshake ever completed
    assert counters["kube_api_errors"] >= 1

    # tls.verify off talks to it anyway
    source, _ = make_source(kube_api, kube_ca_file=str(other_ca), **{"tls.verify": "off"})
    run(source, lambda: until(found(source, "shop", "web-1")))


def test_unreadable_ca_file_is_a_config_error(kube_api: KubeApiPeer, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"kube_ca_file .* is not readable"):
        check_api_options(kube_api.options(kube_ca_file=str(tmp_path / "missing.crt")))
    bad = tmp_path / "bad.crt"
    bad.write_text("not a certificate")
    with pytest.raises(ValueError, match="no usable CA certificate"):
        check_api_options(kube_api.options(kube_ca_file=str(bad)))
    with pytest.raises(ValueError, match="kube_url"):
        check_api_options(kube_api.options(kube_url="ftp://x"))
    # fine without verification, or over plain http
    check_api_options(kube_api.options(kube_ca_file=str(bad), **{"tls.verify": "off"}))
    check_api_options(kube_api.options(kube_ca_file=str(bad), kube_url="http://127.0.0.1:1"))


def test_api_down_at_start_then_up_without_request_storm(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    names = [f"p{i}" for i in range(5)]
    for name in names:
        srv.add_pod(pod("shop", name))
    srv.add_pod(pod("shop", "remote", node="node-b"))
    srv.stop()
    source, counters = make_source(kube_api, kube_retry_max="0.4")

    async def body() -> None:
        began = time.monotonic()
        await source.start(3.0)
        assert time.monotonic() - began < 2.0  # the first list failed fast: no 3 s wait
        # one second of a busy filter asking for 6 pods every 5 ms
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            for name in [*names, "remote"]:
                entry = source.lookup("pod", "shop", name)
                assert entry is None or entry.obj is None
            await asyncio.sleep(0.005)
        entry = source.lookup("pod", "shop", "p0")
        assert entry is not None and "cannot connect" in entry.error
        attempts = counters["kube_api_requests"]
        # lists with backoff (0.4 s cap) and one probe at a time: a handful, not hundreds
        assert attempts <= 12, attempts
        srv.start()
        for name in names:
            await until(found(source, "shop", name))
        await until(found(source, "shop", "remote"))

    asyncio.run(_started_by(source, body))
    # once up: the list, the watch and at most a probe or two, not a GET per pod and lookup
    assert srv.count("/api/v1/namespaces/shop/pods/") <= 3
    assert srv.count() <= 6


async def _started_by(source: ApiSource, body: Callable[[], Awaitable[None]]) -> None:
    try:
        await body()
    finally:
        await source.stop()


def test_buffer_size_exceeded(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    big = {"note": "x" * 40_000}
    srv.add_pod(pod("shop", "big-local", annotations=big))
    srv.add_pod(pod("shop", "big-remote", annotations=big, node="node-b"))
    srv.add_pod(pod("shop", "small"))
    source, counters = make_source(kube_api, kube_retry_max="5")

    async def body() -> None:
        assert source.lookup("pod", "shop", "small") is not None
        local = source.lookup("pod", "shop", "big-local")
        assert local is not None and local.obj is None
        assert "larger than buffer_size" in local.error
        source.lookup("pod", "shop", "big-remote")
        remote = await until(negative(source, "shop", "big-remote"))
        assert "larger than buffer_size" in remote.error
        for _ in range(20):  # negative for the backoff: no new request
            source.lookup("pod", "shop", "big-remote")
            await asyncio.sleep(0.01)
        # a watch event carrying a too large object
        srv.update_pod("shop", "small", annotations=big)
        await until(negative(source, "shop", "small"))

    run(source, body)
    assert srv.count("/api/v1/namespaces/shop/pods/big-remote") == 1
    assert counters["kube_too_large"] == 3

    source, _ = make_source(kube_api, buffer_size="0")

    async def unlimited() -> None:
        assert source.lookup("pod", "shop", "big-local") is not None
        await until(found(source, "shop", "big-remote"))
    run(source, unlimited)


def test_use_kubelet(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.add_pod(pod("shop", "web-1"))
    srv.add_pod(pod("shop", "remote", node="node-b"))
    source, _ = make_source(kube_api, use_kubelet="on", kubelet_host="127.0.0.1",
                            kubelet_port=str(srv.port), kube_url="https://127.0.0.1:1")

    async def body() -> None:
        entry = source.lookup("pod", "shop", "web-1")
        assert entry is not None and entry.obj is not None
        srv.add_pod(pod("shop", "web-2"))
        assert source.lookup("pod", "shop", "web-2") is None
        await until(found(source, "shop", "web-2"))  # refreshed on the miss (>= 1 s later)
        for _ in range(30):
            source.lookup("pod", "shop", "remote")
            await asyncio.sleep(0.01)
        gone = await until(negative(source, "shop", "remote"), timeout=3)
        assert "not on this node's kubelet" in gone.error

    run(source, body)
    assert srv.count("/api/v1") == 0
    assert 2 <= srv.count("/pods") <= 4


def test_watch_off_gets_per_miss_with_ttl(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.add_pod(pod("shop", "web-1", annotations={"v": "1"}))
    source, _ = make_source(kube_api, kube_watch="off", kube_meta_cache_ttl="0.3")

    async def body() -> None:
        assert source.lookup("pod", "shop", "web-1") is None
        first = await until(found(source, "shop", "web-1"))
        srv.update_pod("shop", "web-1", annotations={"v": "2"})
        for _ in range(10):
            assert source.lookup("pod", "shop", "web-1") is first  # cached until the TTL
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.3)

        def refreshed() -> Entry | None:
            e = source.lookup("pod", "shop", "web-1")
            return e if e is not None and e.version != first.version else None
        second = await until(refreshed)
        assert second.obj is not None and second.obj["metadata"]["annotations"] == {"v": "2"}

    run(source, body)
    assert srv.count("/api/v1/pods") == 0
    assert srv.count("/api/v1/namespaces/shop/pods/web-1") == 2


def test_forbidden_is_negative(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.set_tokens(forbidden=["rillet-test-token"])
    source, _ = make_source(kube_api, kube_watch="off")

    async def body() -> None:
        source.lookup("pod", "shop", "web-1")
        entry = await until(negative(source, "shop", "web-1"))
        assert "HTTP 403" in entry.error and "cannot get resource" in entry.error

    run(source, body)


def test_namespaces_watch_and_get(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.add_namespace({"metadata": {"name": "shop", "labels": {"team": "a"}}})
    for watch in ("on", "off"):
        source, _ = make_source(kube_api, namespaces=True, kube_watch=watch)
        run(source, lambda s=source: _namespace_has_labels(s))
    assert srv.count("/api/v1/namespaces", watch=True) == 1
    assert srv.count("/api/v1/namespaces/shop") == 1


async def _namespace_has_labels(source: ApiSource) -> None:
    def ns() -> Entry | None:
        e = source.lookup("namespace", "shop", "shop")
        return e if e is not None and e.obj is not None else None
    entry = await until(ns)
    assert entry.obj is not None
    assert entry.obj["metadata"]["labels"] == {"team": "a"}


def test_verify_hostname_and_vhost(kube_api: KubeApiPeer) -> None:
    srv = kube_api.server
    srv.add_pod(pod("shop", "web-1"))
    source, _ = make_source(kube_api, **{"tls.verify_hostname": "on", "tls.vhost": "evil.test"})

    async def refused() -> None:
        entry = await until(negative(source, "shop", "web-1"))
        assert "evil.test" in entry.error or "hostname" in entry.error.lower()
    run(source, refused, wait=1.0)
    source, _ = make_source(kube_api, **{"tls.verify_hostname": "on", "tls.vhost": "localhost"})
    run(source, lambda: until(found(source, "shop", "web-1")))


def test_malformed_answers_are_errors_not_crashes(tmp_path: Path) -> None:
    """A server answering nonsense (plain http): counted, logged, negative entries."""

    async def nonsense(request: web.Request) -> web.Response:
        if request.query.get("watch"):
            return web.Response(body=b'["not", "an", "event"]\n{"type": "ADDED"}\n')
        if request.path == "/api/v1/pods":
            return web.Response(body=b"[1, 2]", content_type="application/json")
        return web.Response(body=b'"a string"', content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", nonsense)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        section = Section("filter", "t.conf", 1)
        for key, value in {"kube_url": f"http://127.0.0.1:{port}", "kube_retry_max": "0.1",
                           "kube_token_file": str(tmp_path / "none")}.items():
            section.set(key, value)
        errors: list[str] = []
        opts = resolve(section, API_OPTIONS, errors)
        assert not errors
        counters = Counters()
        source = ApiSource(opts, LOG, counters, namespaces=False)
        try:
            await source.start(1.0)
            entry = await until(negative(source, "shop", "x"))
            assert "not a JSON object" in entry.error
            await until(lambda: counters["kube_watch_restarts"] >= 2)
        finally:
            await source.stop()
            await runner.cleanup()

    asyncio.run(main())


def test_ca_path_folder(kube_api: KubeApiPeer, tmp_path: Path) -> None:
    srv = kube_api.server
    srv.add_pod(pod("shop", "web-1"))
    folder = tmp_path / "cas"
    folder.mkdir()
    make_test_certs(tmp_path / "other")
    (folder / "other.crt").write_bytes((tmp_path / "other" / "ca.crt").read_bytes())
    (folder / "README").write_text("not a certificate")
    (folder / "cluster.crt").write_bytes(kube_api.certs.ca.read_bytes())
    source, _ = make_source(kube_api, kube_ca_file="", kube_ca_path=str(folder))
    run(source, lambda: until(found(source, "shop", "web-1")))
    with pytest.raises(ValueError, match="kube_ca_path"):
        check_api_options(kube_api.options(kube_ca_path=str(tmp_path / "absent")))


def test_a_silent_watch_is_reopened(kube_api: KubeApiPeer,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A watch connection that carries nothing (not even bookmarks) for _WATCH_IDLE seconds is
    treated as dead and re-opened from the last resourceVersion, without a re-list."""
    import rillet.filters.kubernetes.api as api

    monkeypatch.setattr(api, "_WATCH_IDLE", 0.5)
    srv = kube_api.server
    srv.bookmark_interval = 60.0  # silent
    srv.add_pod(pod("shop", "web-1"))
    source, counters = make_source(kube_api)

    async def body() -> None:
        await until(found(source, "shop", "web-1"))
        await until(lambda: srv.count("/api/v1/pods", watch=True) >= 3, timeout=5)
        srv.add_pod(pod("shop", "web-2"))
        await until(found(source, "shop", "web-2"))

    run(source, body)
    assert srv.count("/api/v1/pods", watch=False) == 1  # resumed, never re-listed
    assert counters["kube_relists"] == 0
