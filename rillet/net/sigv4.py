"""AWS SigV4 signing for plugins that send their own HTTP requests (``aws_auth``).

Credentials come from the AWS layer (:class:`rillet.aws.credentials.CredentialsProvider`:
botocore's chain, ``aws_profile``, ``aws_role_arn`` / ``aws_external_id`` through STS); the
signature is botocore's ``SigV4Auth`` over the exact bytes sent (compressed when they are), with
``x-amz-content-sha256`` set as Amazon OpenSearch Serverless (``aoss``) requires. The Host header
is signed without a port, as Fluent Bit does for Amazon OpenSearch Service.
"""

from __future__ import annotations

import hashlib
import logging

from rillet.aws.signing import SigV4
from rillet.config.options import Option, T

__all__ = ["AWS_OPTIONS", "Signer"]

# The es/opensearch option names (the http output spells the service ``aws_service``).
AWS_OPTIONS: tuple[Option, ...] = (
    Option("aws_auth", T.BOOL, "off", "sign requests with AWS SigV4 (Amazon OpenSearch "
           "Service)"),
    Option("aws_region", T.STR, None, "AWS region of the domain (required with aws_auth)"),
    Option("aws_sts_endpoint", T.STR, None, "STS endpoint used with aws_role_arn"),
    Option("aws_role_arn", T.STR, None, "IAM role to assume (STS AssumeRole)"),
    Option("aws_external_id", T.STR, None, "external ID for aws_role_arn"),
    Option("aws_profile", T.STR, None, "profile of the shared AWS config/credentials files"),
)


class Signer:
    """Signs requests for one output instance (``service``: ``es``, ``aoss``, ...)."""

    def __init__(self, log: logging.Logger, *, region: str, service: str,
                 profile: str | None = None, role_arn: str | None = None,
                 external_id: str | None = None, sts_endpoint: str | None = None) -> None:
        from rillet.aws.credentials import CredentialsProvider

        self.region = region
        self.service = service
        self.credentials = CredentialsProvider(log, region=region, profile=profile,
                                               role_arn=role_arn, external_id=external_id,
                                               sts_endpoint=sts_endpoint)
        self._sigv4 = SigV4(service, region)

    async def start(self) -> None:
        await self.credentials.start()

    async def sign(self, method: str, url: str, body: bytes,
                   headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """``headers`` plus ``X-Amz-Date``, ``x-amz-content-sha256``, ``Authorization`` (and
        ``X-Amz-Security-Token``). Raises ``CredentialsError`` when no credentials can be had."""
        frozen = await self.credentials.frozen()
        # Content-Length is left unsigned (Fluent Bit's aws_unsigned_headers).
        unsigned = {"content-length", "user-agent"}
        signed = [(k, v) for k, v in headers if k.lower() not in unsigned]
        signed.append(("x-amz-content-sha256", hashlib.sha256(body).hexdigest()))
        out = [(k, v) for k, v in headers if k.lower() in unsigned]
        out.extend(self._sigv4.headers(frozen, method, url, body, dict(signed)))
        return out

    def invalidate(self) -> None:
        self.credentials.invalidate()
