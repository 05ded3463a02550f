"""Options every AWS output takes for the AWS layer (credentials, STS, retries, TLS), declared
once: an output's option table splices :data:`AWS_OPTIONS` in after its own."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, TypeVar

from rillet.aws.client import AwsClient
from rillet.aws.credentials import CredentialsProvider
from rillet.config.options import Option, T
from rillet.net.tls import TLS_OPTIONS, client_tls

C = TypeVar("C", bound=AwsClient)

# Fluent Bit's tls.* settings, which its AWS outputs apply to their HTTPS connections (a private
# CA, a client certificate, an S3-compatible store with a self-signed certificate). Whether TLS
# is used follows the endpoint's scheme; the host name is checked by default (stricter than
# Fluent Bit's tls.verify_hostname off: AWS endpoints always name themselves).
_TLS_DOCS = {
    "tls": "accepted for compatibility: TLS follows the endpoint's scheme (https)",
    "tls.verify_hostname": "also verify that the certificate names the host (on for AWS)",
    "tls.vhost": "accepted for compatibility; SNI is the endpoint's host",
}
AWS_TLS_OPTIONS: tuple[Option, ...] = tuple(
    replace(o, default="on" if o.name == "tls.verify_hostname" else o.default,
            doc=_TLS_DOCS.get(o.name, o.doc))
    for o in TLS_OPTIONS)

AWS_OPTIONS: tuple[Option, ...] = (
    Option("role_arn", T.STR, None, "IAM role to assume (STS AssumeRole)"),
    Option("external_id", T.STR, None, "external ID for role_arn"),
    Option("sts_endpoint", T.STR, None, "STS endpoint for role_arn"),
    Option("profile", T.STR, None, "profile of the shared config/credentials files"),
    Option("extra_user_agent", T.STR, None, "text appended to the User-Agent"),
    Option("auto_retry_requests", T.BOOL, "true", "retry a request once at once after a "
           "network error"),
    *AWS_TLS_OPTIONS,
)


def aws_ssl_context(opts: Mapping[str, Any]) -> ssl.SSLContext | None:
    """The TLS context for an AWS output's connections: None (the system's trust store, host
    names checked) unless a ``tls.*`` option asks for something else. Unusable certificate
    files are ``ValueError`` (a startup error naming the option)."""
    if opts.get("tls.verify", True) and opts.get("tls.verify_hostname", True) \
            and not any(opts.get(k) for k in ("tls.ca_file", "tls.ca_path", "tls.crt_file",
                                              "tls.key_file")):
        return None
    return client_tls({**opts, "tls.verify_hostname": opts.get("tls.verify_hostname", True)},
                      force=True).context


def connect(opts: Mapping[str, Any], client: Callable[..., C], service: str, region: str,
            log: logging.Logger, *, endpoint: str | None,
            timeout: float = 30.0) -> tuple[CredentialsProvider, C]:
    """The credentials chain and the client of one AWS output instance, from the option rows
    above (``client`` builds the client: :class:`AwsClient` or a subclass)."""
    credentials = CredentialsProvider(log, region=region, profile=opts["profile"],
                                      role_arn=opts["role_arn"], external_id=opts["external_id"],
                                      sts_endpoint=opts["sts_endpoint"])
    return credentials, client(service, region, credentials, log, endpoint=endpoint,
                               extra_user_agent=opts["extra_user_agent"],
                               auto_retry=opts["auto_retry_requests"], timeout=timeout,
                               ssl_context=aws_ssl_context(opts))
