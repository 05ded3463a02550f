"""tls.* options of the AWS outputs: a private CA, verification off, host-name checks."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path

import pytest
import trustme
from aiohttp import web

from rillet.aws.client import AwsClient, Response
from rillet.aws.credentials import CredentialsProvider
from rillet.aws.options import aws_ssl_context
from rillet.devtools.kube_api import make_test_certs, server_ssl_context
from rillet.outputs.cloudwatch_logs import CloudWatchLogs
from rillet.outputs.kinesis_streams import KinesisStreams
from rillet.outputs.s3 import S3
from tests.plugin_kit import make_plugin

LOG = logging.getLogger("test.aws.tls")


async def _call(ctx: ssl.SSLContext, client_ssl: ssl.SSLContext | None) -> Response:
    async def answer(request: web.Request) -> web.Response:
        return web.json_response({"nextSequenceToken": "1"})
    app = web.Application()
    app.router.add_post("/", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock, ssl_context=ctx).start()
    url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    client = AwsClient("logs", "us-east-1", CredentialsProvider(LOG, region="us-east-1"), LOG,
                       endpoint=url, auto_retry=False, ssl_context=client_ssl)
    try:
        await client.start()
        return await client.call_json("PutLogEvents", b"{}")
    finally:
        await client.close()
        await runner.cleanup()


def call(ctx: ssl.SSLContext, **opts: object) -> Response:
    return asyncio.run(_call(ctx, aws_ssl_context(opts)))


def test_a_private_ca_verification_and_host_names(aws_env: None, tmp_path: Path) -> None:
    certs = make_test_certs(tmp_path / "pki")
    server = server_ssl_context(certs.cert, certs.key)
    refused = call(server)                                  # the system's store: unknown CA
    assert refused.status == 0 and "certificate" in refused.message.lower()
    assert call(server, **{"tls.ca_file": str(certs.ca)}).status == 200
    assert call(server, **{"tls.verify": False}).status == 200
    # A certificate for another name: refused unless host-name checks are turned off.
    ca = trustme.CA()
    other = ca.issue_cert("other.example")
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other.configure_cert(ctx)
    ca_file = tmp_path / "other-ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    wrong_name = call(ctx, **{"tls.ca_file": str(ca_file)})
    assert wrong_name.status == 0 and "mismatch" in wrong_name.message.lower()
    assert call(ctx, **{"tls.ca_file": str(ca_file), "tls.verify_hostname": False}).status == 200


def test_defaults_keep_the_standard_context() -> None:
    assert aws_ssl_context({"tls": False, "tls.verify": True, "tls.verify_hostname": True}) \
        is None


@pytest.mark.parametrize("cls", [CloudWatchLogs, KinesisStreams, S3])
def test_every_aws_output_takes_the_tls_options(cls: type, aws_env: None,
                                                tmp_path: Path) -> None:
    base = {"region": "us-east-1", "log_group_name": "g", "log_stream_name": "s",
            "stream": "s", "bucket": "b", "store_dir": str(tmp_path)}
    table = {o.name for o in cls.options}
    settings = {k: v for k, v in base.items() if k in table}
    plugin = make_plugin(cls, **settings, **{"tls.verify": "off"})
    ctx = plugin.client.ssl_context
    assert ctx is not None and ctx.verify_mode == ssl.CERT_NONE
    assert make_plugin(cls, **settings).client.ssl_context is None


def test_an_unreadable_ca_file_is_a_startup_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"tls\.ca_file: cannot load CA certificates"):
        aws_ssl_context({"tls.ca_file": str(tmp_path / "missing.pem")})
