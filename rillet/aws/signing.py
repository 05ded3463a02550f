"""SigV4 signing shared by the AWS client and the outputs that sign their own HTTP requests
(es / opensearch with AWS_Auth): botocore's ``SigV4Auth``, rebuilt only when the credentials
change. botocore is imported on first use, so importing this module stays cheap."""

from __future__ import annotations

from typing import Any


class SigV4:
    """``auth_class``: a ``SigV4Auth`` subclass when a service signs differently (S3 signs the
    path exactly as sent)."""

    def __init__(self, service: str, region: str, auth_class: Any = None) -> None:
        self.service = service
        self.region = region
        self.auth_class = auth_class
        self._auth: Any = None
        self._auth_for: Any = None

    def headers(self, frozen: Any, method: str, url: str, body: bytes,
                headers: dict[str, str]) -> list[tuple[str, str]]:
        """``headers`` plus the signature headers, for ``frozen`` (botocore) credentials."""
        from botocore.auth import SigV4Auth
        from botocore.awsrequest import AWSRequest

        auth = self._auth
        if auth is None or self._auth_for != frozen:
            cls = self.auth_class or SigV4Auth
            auth = self._auth = cls(frozen, self.service, self.region)
            self._auth_for = frozen
        req = AWSRequest(method=method, url=url, data=body, headers=headers)
        auth.add_auth(req)
        return list(req.headers.items())
