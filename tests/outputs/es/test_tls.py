"""rillet.net.tls: the tls.* options as an SSLContext, and a client certificate over loopback."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import pytest
import trustme

from rillet.engine.plugin import Status
from rillet.net.tls import client_tls
from rillet.outputs.es import Elasticsearch
from tests.outputs.es.helpers import deliver, segments
from tests.peers.bulk_server import BulkServer
from tests.plugin_kit import make_chunk, make_plugin


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def write(path: Path, blob: Any) -> str:
    blob.write_to_path(str(path))
    return str(path)


def test_off_verify_and_hostname() -> None:
    assert client_tls({"tls": False}).context is None
    assert not client_tls({"tls": False}).enabled
    forced = client_tls({"tls": False}, force=True)
    assert forced.context is not None and forced.context.verify_mode == ssl.CERT_REQUIRED
    assert not forced.context.check_hostname
    loose = client_tls({"tls": True, "tls.verify": False})
    assert loose.context is not None and loose.context.verify_mode == ssl.CERT_NONE
    strict = client_tls({"tls": True, "tls.verify": True, "tls.verify_hostname": True,
                         "tls.vhost": "es.internal"})
    assert strict.context is not None and strict.context.check_hostname
    assert strict.server_hostname == "es.internal"


def test_files(tmp_path: Path, ca: trustme.CA) -> None:
    ca_file = write(tmp_path / "ca.pem", ca.cert_pem)
    client = ca.issue_cert("client@example")
    crt = write(tmp_path / "c.pem", client.cert_chain_pems[0])
    key = write(tmp_path / "k.pem", client.private_key_pem)
    ok = client_tls({"tls": True, "tls.ca_file": ca_file, "tls.crt_file": crt,
                     "tls.key_file": key})
    assert ok.context is not None
    cadir = tmp_path / "cadir"
    cadir.mkdir()
    assert client_tls({"tls": True, "tls.ca_path": str(cadir)}).enabled
    with pytest.raises(ValueError, match=r"tls\.crt_file"):
        client_tls({"tls": True, "tls.crt_file": key, "tls.key_file": crt})
    with pytest.raises(ValueError, match=r"tls\.ca_file"):
        client_tls({"tls": True, "tls.ca_file": str(tmp_path / "missing.pem")})
    encrypted = tmp_path / "enc.pem"
    from cryptography.hazmat.primitives import serialization
    pkey = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
    encrypted.write_bytes(pkey.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw")))
    assert client_tls({"tls": True, "tls.crt_file": crt, "tls.key_file": str(encrypted),
                       "tls.key_passwd": "pw"}).enabled
    with pytest.raises(ValueError):
        client_tls({"tls": True, "tls.crt_file": crt, "tls.key_file": str(encrypted),
                    "tls.key_passwd": "wrong"})


def test_client_certificate_over_loopback(tmp_path: Path, ca: trustme.CA) -> None:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.configure_trust(server_ctx)
    server_ctx.verify_mode = ssl.CERT_REQUIRED
    client = ca.issue_cert("client@example")
    files = {"tls.ca_file": write(tmp_path / "ca.pem", ca.cert_pem),
             "tls.crt_file": write(tmp_path / "c.pem", client.cert_chain_pems[0]),
             "tls.key_file": write(tmp_path / "k.pem", client.private_key_pem),
             "tls.debug": "4"}
    with BulkServer(tls=server_ctx) as srv:
        with_cert = make_plugin(Elasticsearch, port=str(srv.port), tls="on", **files)
        assert deliver(with_cert, make_chunk([{"n": 1}])) == [Status.OK]
        without = make_plugin(Elasticsearch, port=str(srv.port), tls="on",
                              **{"tls.ca_file": files["tls.ca_file"]})
        assert segments(deliver(without, make_chunk([{"n": 2}]))[0]) == [(0, 1, Status.RETRY)]
        assert [d["n"] for d in srv.all_docs()] == [1]
