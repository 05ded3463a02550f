"""Fluent Bit's ``tls.*`` options (FBD administration/transport-security.md) for clients.

A plugin adds :data:`TLS_OPTIONS` to its option table and calls :func:`client_tls` once in
``__init__``; the result carries the :class:`ssl.SSLContext` (None when ``tls`` is off) and the
name to send as SNI (``tls.vhost``, else the host). Unreadable certificate or key files are
``ValueError`` (a configuration error at startup).

Semantics, as in Fluent Bit:

- ``tls.verify`` (on) checks the peer's certificate chain against ``tls.ca_file`` /
  ``tls.ca_path``, or the system store when neither is set.
- ``tls.verify_hostname`` (off, Fluent Bit's default) also checks that the certificate names
  the host (or ``tls.vhost``).
- ``tls.crt_file`` / ``tls.key_file`` (``tls.key_passwd``) present a client certificate.
- ``tls.debug`` is accepted for compatibility; Python's ssl module has no debug levels, so
  handshake failures are simply logged with their reason by the plugin.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rillet.config.options import Option, T

__all__ = ["TLS_OPTIONS", "ClientTls", "client_tls"]

TLS_OPTIONS: tuple[Option, ...] = (
    Option("tls", T.BOOL, "off", "use TLS for the connection"),
    Option("tls.verify", T.BOOL, "on", "verify the peer's certificate chain"),
    Option("tls.verify_hostname", T.BOOL, "off", "also verify that the certificate names the "
           "host (or tls.vhost)"),
    Option("tls.debug", T.INT, "1", "TLS debug level (accepted for compatibility; ignored)"),
    Option("tls.ca_file", T.STR, None, "CA certificates (PEM) to verify the peer with"),
    Option("tls.ca_path", T.STR, None, "directory of CA certificates (hashed names)"),
    Option("tls.crt_file", T.STR, None, "client certificate (PEM)"),
    Option("tls.key_file", T.STR, None, "private key of the client certificate (PEM)"),
    Option("tls.key_passwd", T.STR, None, "password of tls.key_file"),
    Option("tls.vhost", T.STR, None, "host name sent in SNI (and checked with "
           "tls.verify_hostname)"),
)


@dataclass(frozen=True, slots=True)
class ClientTls:
    """What a client needs: the context (None = plain TCP) and the SNI name (None = host)."""

    context: ssl.SSLContext | None
    server_hostname: str | None = None

    @property
    def enabled(self) -> bool:
        return self.context is not None


def client_tls(opts: Mapping[str, Any], force: bool = False) -> ClientTls:
    """The TLS settings of an instance; ``force`` turns TLS on whatever ``tls`` says (e.g. an
    ``https://`` URL). Raises ``ValueError`` naming the option when a file cannot be used."""
    if not (opts.get("tls") or force):
        return ClientTls(None)
    verify = bool(opts.get("tls.verify", True))
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ctx.check_hostname = False
    if verify:
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = bool(opts.get("tls.verify_hostname", False))
    else:
        ctx.verify_mode = ssl.CERT_NONE
    ca_file = opts.get("tls.ca_file")
    ca_path = opts.get("tls.ca_path")
    if ca_file or ca_path:
        try:
            ctx.load_verify_locations(cafile=ca_file or None, capath=ca_path or None)
        except (OSError, ssl.SSLError) as exc:
            key = "tls.ca_file" if ca_file else "tls.ca_path"
            raise ValueError(f"{key}: cannot load CA certificates: {exc}") from exc
    crt = opts.get("tls.crt_file")
    key_file = opts.get("tls.key_file")
    if key_file and not crt:
        raise ValueError("tls.key_file is set without tls.crt_file")
    if crt:
        try:
            ctx.load_cert_chain(crt, keyfile=key_file or None,
                                password=opts.get("tls.key_passwd") or None)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"tls.crt_file: cannot load the client certificate: {exc}") from exc
    return ClientTls(ctx, opts.get("tls.vhost") or None)
