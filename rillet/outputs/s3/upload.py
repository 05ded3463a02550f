"""S3 requests: PutObject and the multipart upload calls, signed with SigV4 over the shared
AWS client (pooled aiohttp session, credentials chain, delivery policy).

S3 is a REST/XML API: the key goes in the URL path (percent-encoded once, and signed as sent:
S3 does not normalise ``//`` or ``.`` segments), the body is the object bytes, and
``x-amz-content-sha256`` is the payload's SHA-256 over plain HTTP, ``UNSIGNED-PAYLOAD`` over TLS
(botocore's choice for S3). Errors come back as XML
(``<Error><Code>NoSuchUpload</Code>...``); the code is read from it so that the shared policy can
tell throttling (``SlowDown``) and server errors (retried) from permanent errors.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from botocore.auth import SigV4Auth

from rillet.aws.client import AwsClient, Response
from rillet.aws.policy import DeliveryPolicy, Outcome, classify
from rillet.aws.signing import SigV4
from rillet.outputs.s3.key import object_path

_XML_CODE = re.compile(rb"<Code>([^<]*)</Code>")
_XML_MESSAGE = re.compile(rb"<Message>([^<]*)</Message>")
_UPLOAD_ID = re.compile(rb"<UploadId>([^<]*)</UploadId>")
_UPLOAD = re.compile(rb"<Upload>(.*?)</Upload>", re.S)
_KEY = re.compile(rb"<Key>([^<]*)</Key>")
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
# The partitions' DNS suffixes (botocore's endpoint data).
_AWS_DOMAINS = (".amazonaws.com", ".amazonaws.com.cn", ".c2s.ic.gov", ".sc2s.sgov.gov",
                ".cloud.adc-e.uk", ".csp.hci.ic.gov", ".api.aws")
_EXPIRED = frozenset({"ExpiredToken", "ExpiredTokenException"})
NO_SUCH_UPLOAD = "NoSuchUpload"
_UNSIGNED = "UNSIGNED-PAYLOAD"


def _xml_text(raw: bytes) -> str:
    text = raw.decode("utf-8", "replace")
    return (text.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", '"')
            .replace("&apos;", "'").replace("&amp;", "&"))


def _xml_escape(text: str) -> str:
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace('"', "&quot;"))


class _S3Signer(SigV4Auth):
    """SigV4 as S3 wants it: the path is signed exactly as sent (no normalisation)."""

    def _normalize_url_path(self, path: str) -> str:
        return path


class S3Client(AwsClient):
    """The shared AWS client pointed at one bucket: virtual-hosted URLs on AWS endpoints
    (``https://<bucket>.s3.<region>.amazonaws.com/<key>``), path-style URLs with a custom
    ``endpoint`` or a bucket name that is not a DNS label (``<endpoint>/<bucket>/<key>``)."""

    keep_headers = True

    def __init__(self, *args: Any, bucket: str, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._signer = SigV4("s3", self.region, _S3Signer)
        self.bucket = bucket
        self.tls = self.url.startswith("https:")
        custom = kw.get("endpoint")
        parts = urlsplit(self.url)
        # An endpoint from the SDKs' AWS_ENDPOINT_URL(_S3) variables is custom too: only AWS's
        # own hosts get virtual-hosted URLs.
        aws_host = (parts.hostname or "").endswith(_AWS_DOMAINS)
        if not custom and aws_host and _DNS_BUCKET.match(bucket):
            netloc = bucket + "." + parts.netloc
            self.url = urlunsplit((parts.scheme, netloc, "", "", "")).rstrip("/")
            self.prefix = ""
        else:
            self.prefix = "/" + quote(bucket, safe="")

    def path(self, key: str, query: str = "") -> str:
        p = self.prefix + "/" + quote(object_path(key), safe="/~")
        return p + ("?" + query if query else "")

    async def _send_once(self, method: str, path: str, body: bytes,
                         headers: dict[str, str]) -> Response:
        h = dict(headers)
        # As botocore does for S3: over TLS the payload is not hashed (TLS protects it, and
        # Content-MD5 can be asked for); over plain HTTP its SHA-256 is signed.
        h["X-Amz-Content-SHA256"] = (_UNSIGNED if self.tls
                                     else hashlib.sha256(body).hexdigest())
        resp = await super()._send_once(method, path, body, h)
        if resp.status >= 300 and resp.body.lstrip().startswith(b"<"):
            m = _XML_CODE.search(resp.body)
            if m:
                resp.error_code = _xml_text(m.group(1))
                msg = _XML_MESSAGE.search(resp.body)
                resp.message = _xml_text(msg.group(1)) if msg else ""
                if resp.error_code in _EXPIRED:
                    self.credentials.invalidate()
        elif resp.status >= 300 and not resp.error_code and not resp.body:
            resp.error_code = {404: "NotFound", 403: "AccessDenied"}.get(resp.status, "")
        return resp


@dataclass(frozen=True, slots=True)
class ObjectSettings:
    """Headers set on every new object."""

    content_type: str | None = None
    content_encoding: str | None = None
    canned_acl: str | None = None
    storage_class: str | None = None
    send_content_md5: bool = False

    def create_headers(self) -> dict[str, str]:
        h: dict[str, str] = {}
        if self.content_type:
            h["Content-Type"] = self.content_type
        if self.content_encoding:
            h["Content-Encoding"] = self.content_encoding
        if self.canned_acl:
            h["x-amz-acl"] = self.canned_acl
        if self.storage_class:
            h["x-amz-storage-class"] = self.storage_class
        return h


class UploadError(Exception):
    """A request that failed after the policy's retries; ``permanent`` when retrying later
    cannot help either; ``code`` is S3's error code."""

    def __init__(self, what: str, resp: Response) -> None:
        super().__init__(f"{what}: {resp.describe()}")
        self.code = resp.error_code
        self.permanent = classify(resp) is Outcome.PERMANENT


class S3Api:
    def __init__(self, client: S3Client, policy: DeliveryPolicy,
                 settings: ObjectSettings) -> None:
        self.client = client
        self.policy = policy
        self.settings = settings

    async def _call(self, what: str, method: str, path: str, body: bytes,
                    headers: dict[str, str]) -> Response:
        client = self.client
        resp = await self.policy.send(lambda: client.request(method, path, body, headers),
                                      what)
        if not resp.ok:
            raise UploadError(what, resp)
        return resp

    def _body_headers(self, body: bytes) -> dict[str, str]:
        h: dict[str, str] = {}
        if self.settings.send_content_md5:
            h["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        return h

    async def put_object(self, key: str, body: bytes) -> None:
        h = self.settings.create_headers()
        h.update(self._body_headers(body))
        await self._call(f"PutObject {key}", "PUT", self.client.path(key), body, h)

    async def create_multipart(self, key: str) -> str:
        resp = await self._call(f"CreateMultipartUpload {key}", "POST",
                                self.client.path(key, "uploads"), b"",
                                self.settings.create_headers())
        m = _UPLOAD_ID.search(resp.body)
        if not m:
            raise UploadError(f"CreateMultipartUpload {key}",
                              Response(500, resp.body, "InternalError", "no UploadId"))
        return _xml_text(m.group(1))

    async def upload_part(self, key: str, upload_id: str, number: int, body: bytes) -> str:
        query = f"partNumber={number}&uploadId={quote(upload_id, safe='')}"
        resp = await self._call(f"UploadPart {key} #{number}", "PUT",
                                self.client.path(key, query), body, self._body_headers(body))
        etag = next((v for k, v in resp.headers.items() if k.lower() == "etag"), "")
        if not etag:
            raise UploadError(f"UploadPart {key} #{number}",
                              Response(500, b"", "InternalError", "no ETag in the answer"))
        return etag

    async def complete_multipart(self, key: str, upload_id: str,
                                 parts: list[list[Any]]) -> None:
        xml = ["<CompleteMultipartUpload>"]
        for number, etag, *_ in parts:
            xml.append(f"<Part><PartNumber>{number}</PartNumber>"
                       f"<ETag>{_xml_escape(etag)}</ETag></Part>")
        xml.append("</CompleteMultipartUpload>")
        body = "".join(xml).encode()
        resp = await self._call(f"CompleteMultipartUpload {key}", "POST",
                                self.client.path(key, "uploadId=" + quote(upload_id, safe="")),
                                body, {"Content-Type": "application/xml"})
        # S3 may answer 200 with an error document when completion fails late.
        if b"<Error>" in resp.body[:200]:
            m = _XML_CODE.search(resp.body)
            raise UploadError(f"CompleteMultipartUpload {key}",
                              Response(500, resp.body, _xml_text(m.group(1)) if m
                                       else "InternalError", "error in a 200 answer"))

    async def abort_multipart(self, key: str, upload_id: str) -> None:
        try:
            await self._call(f"AbortMultipartUpload {key}", "DELETE",
                             self.client.path(key, "uploadId=" + quote(upload_id, safe="")),
                             b"", {})
        except UploadError as exc:
            if exc.code != NO_SUCH_UPLOAD:
                raise

    async def list_uploads(self, key: str) -> list[str]:
        """Upload ids of the multipart uploads in progress for exactly ``key``."""
        name = object_path(key)
        path = (self.client.prefix or "/") + "?uploads&prefix=" + quote(name, safe="")
        resp = await self._call(f"ListMultipartUploads {key}", "GET", path, b"", {})
        out: list[str] = []
        for block in _UPLOAD.findall(resp.body):
            k = _KEY.search(block)
            u = _UPLOAD_ID.search(block)
            if k and u and _xml_text(k.group(1)) == name:
                out.append(_xml_text(u.group(1)))
        return out
