"""AWS credentials: botocore's provider chain, plus the plugin's ``role_arn``.

The chain (botocore's order): environment variables, the plugin's ``profile`` (shared config and
credentials files, ``credential_process``, SSO), IRSA web identity (``AWS_ROLE_ARN`` +
``AWS_WEB_IDENTITY_TOKEN_FILE``, through STS ``AssumeRoleWithWebIdentity``), container credentials
(ECS ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI``, EKS Pod Identity / Greengrass
``AWS_CONTAINER_CREDENTIALS_FULL_URI`` + authorization token) and EC2 IMDSv2. ``role_arn`` wraps
the result in STS ``AssumeRole`` (with ``external_id``; ``sts_endpoint`` overrides the STS URL).

Every network fetch (STS, IMDS, container endpoint, credential_process) runs in a worker thread,
so the event loop never blocks on it. Which provider supplied the credentials is logged once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import botocore.credentials
import botocore.session

__all__ = ["CredentialsError", "CredentialsProvider", "normalize_url"]


class CredentialsError(RuntimeError):
    """No provider could supply credentials (the message says what was tried)."""


def normalize_url(url: str) -> str:
    """``host[:port]`` or a full URL -> a URL with a scheme (https unless given)."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "https://" + url
    return url


class CredentialsProvider:
    """Resolves and refreshes credentials for one output instance."""

    def __init__(self, log: logging.Logger, *, region: str, profile: str | None = None,
                 role_arn: str | None = None, external_id: str | None = None,
                 sts_endpoint: str | None = None, session_name: str | None = None) -> None:
        self.log = log
        self.region = region
        self.profile = profile
        self.role_arn = role_arn
        self.external_id = external_id
        self.sts_endpoint = normalize_url(sts_endpoint) if sts_endpoint else None
        self.session_name = session_name or f"rillet-{int(time.time())}"
        self.method: str | None = None  # provider name, once resolved
        self._session: Any = None
        self._creds: Any = None
        self._lock = asyncio.Lock()
        self._logged = False

    # -- resolution ---------------------------------------------------------------------------
    def _resolve(self) -> Any:
        """Blocking: build the botocore session and the chain (may reach STS, IMDS...)."""
        session = botocore.session.Session(profile=self.profile)
        self._session = session
        base = session.get_credentials()
        if base is None:
            raise CredentialsError(
                "no AWS credentials found (tried: environment, shared config/credentials files"
                f"{' for profile ' + self.profile if self.profile else ''}, credential_process, "
                "web identity (IRSA), container credentials, EC2 instance metadata)")
        base_method = getattr(base, "method", "unknown")
        if not self.role_arn:
            creds = base
            method = base_method
        else:
            extra: dict[str, str] = {"RoleSessionName": self.session_name}
            if self.external_id:
                extra["ExternalId"] = self.external_id

            def client_creator(service: str, **kwargs: Any) -> Any:
                return session.create_client(service, region_name=self.region,
                                             endpoint_url=self.sts_endpoint, **kwargs)

            fetcher = botocore.credentials.AssumeRoleCredentialFetcher(
                client_creator=client_creator, source_credentials=base,
                role_arn=self.role_arn, extra_args=extra,
                expiry_window_seconds=60)
            creds = botocore.credentials.DeferredRefreshableCredentials(
                refresh_using=fetcher.fetch_credentials, method="assume-role")
            method = f"assume-role {self.role_arn} (source credentials: {base_method})"
        # Fetch once now: a web identity or assume-role provider only calls STS on first use.
        frozen = creds.get_frozen_credentials()
        if not frozen.access_key:
            raise CredentialsError(f"provider '{method}' returned empty credentials")
        self._creds = creds
        self.method = method
        return frozen

    async def start(self) -> None:
        """Resolve credentials now (in a thread) and log which provider supplied them.

        A failure is logged and resolution is tried again on the next request."""
        try:
            await self.frozen()
        except Exception as exc:
            self.log.error("AWS credentials: %s", exc)

    async def frozen(self) -> Any:
        """Current credentials as botocore ``ReadOnlyCredentials`` (refreshed when close to
        expiry). Raises :class:`CredentialsError` when none can be had."""
        creds = self._creds
        if creds is not None:
            refresh = getattr(creds, "refresh_needed", None)
            if refresh is None or not refresh():
                return creds.get_frozen_credentials()
        async with self._lock:
            creds = self._creds
            try:
                if creds is None:
                    frozen = await asyncio.to_thread(self._resolve)
                else:
                    frozen = await asyncio.to_thread(creds.get_frozen_credentials)
            except CredentialsError:
                raise
            except Exception as exc:
                raise CredentialsError(f"could not obtain AWS credentials: {exc}") from exc
            if not self._logged:
                self._logged = True
                self.log.info("AWS credentials supplied by provider: %s", self.method)
            return frozen

    def invalidate(self) -> None:
        """Forget the resolved chain (e.g. after ExpiredToken): the next call resolves again."""
        self._creds = None
