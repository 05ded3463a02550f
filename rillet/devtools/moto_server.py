"""moto's AWS server as a subprocess on a free loopback port (tests, benchmarks, the demo).

moto is a development dependency (``moto[server]``); :meth:`MotoServer.start` says so clearly
when it is missing instead of failing on an import deep inside."""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from typing import Any

import botocore.session

# moto accepts any key; these make botocore and rillet sign requests without looking further.
TEST_ENV = {"AWS_ACCESS_KEY_ID": "AKIDTESTTESTTEST", "AWS_SECRET_ACCESS_KEY": "testsecret",
            "AWS_EC2_METADATA_DISABLED": "true"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoServer:
    """``launcher``: the Python arguments that start the server (default ``-m moto.server``)."""

    def __init__(self, port: int | None = None, launcher: Sequence[str] = ("-m", "moto.server"),
                 env: Mapping[str, str] | None = None) -> None:
        self.port = port or free_port()
        self.launcher = list(launcher)
        self.env = dict(env or {})
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> MotoServer:
        if importlib.util.find_spec("moto") is None:
            raise RuntimeError("moto's server is not installed: pip install 'moto[server]' "
                               "(requirements-dev.txt; `make run` installs it)")
        env = {**os.environ, **TEST_ENV, **self.env}
        # A session of its own: a Ctrl-C at the terminal reaches the owner, who stops it.
        self.proc = subprocess.Popen(
            [sys.executable, *self.launcher, "-H", "127.0.0.1", "-p", str(self.port)],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"moto server exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(self.url + "/moto-api/", timeout=1):
                    return self
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError("moto server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def reset(self) -> None:
        req = urllib.request.Request(self.url + "/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def client(self, service: str, region: str = "us-east-1") -> Any:
        """A plain botocore client talking straight to moto (for setup and read-back)."""
        session = botocore.session.Session()
        return session.create_client(service, region_name=region, endpoint_url=self.url,
                                     aws_access_key_id=TEST_ENV["AWS_ACCESS_KEY_ID"],
                                     aws_secret_access_key=TEST_ENV["AWS_SECRET_ACCESS_KEY"])

    def __enter__(self) -> MotoServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def read_log_events(logs: Any, group: str, stream: str) -> list[dict[str, Any]]:
    """Every event of a stream, oldest first, through GetLogEvents pagination."""
    events: list[dict[str, Any]] = []
    token: str | None = None
    while True:
        kw: dict[str, Any] = {"logGroupName": group, "logStreamName": stream,
                              "startFromHead": True, "limit": 10000}
        if token:
            kw["nextToken"] = token
        page = logs.get_log_events(**kw)
        events.extend(page["events"])
        nxt = page.get("nextForwardToken")
        if not page["events"] or nxt == token:
            return events
        token = nxt
