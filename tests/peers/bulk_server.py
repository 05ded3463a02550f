"""A loopback server shaped like OpenSearch's ``_bulk`` API, with fault injection.

Answers as OpenSearch documents them: ``{"took":N,"errors":bool,"items":[{"create":{"_index":
...,"_id":...,"status":201,...}}]}``, an item ``error`` being ``{"type":...,"reason":...}``.
It keeps documents per index (ids generated when absent), answers 409
``version_conflict_engine_exception`` to a ``create`` of an existing id, and enforces a
dynamic mapping: the first value of a field fixes its kind (number, string, object...), a later
value of another kind is a 400 ``mapper_parsing_exception`` (the Merge_Log conflict, §2 item 10).

Faults: ``answers`` (whole answers served before any bulk handling: status and body, or
``None`` to close the connection without answering) and ``item_rule`` (a function of the
action and the document returning ``(status, error_type)`` to force an item's outcome, e.g. 429
for one record). Every request is recorded (headers, raw and decompressed body).
"""

from __future__ import annotations

import gzip
import itertools
import json
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

ItemRule = Callable[[str, dict[str, Any], Any], "tuple[int, str] | None"]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: bytes


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "null"
    return "text"


@dataclass
class BulkServer:
    """Start with ``with BulkServer() as server:``; ``server.url`` is its base URL."""

    tls: ssl.SSLContext | None = None
    requests: list[Recorded] = field(default_factory=list)
    answers: list[tuple[int, bytes] | None] = field(default_factory=list)
    item_rule: ItemRule | None = None
    bulk_hook: Callable[[bytes], tuple[int, bytes]] | None = None  # replaces bulk() answers
    docs: dict[str, dict[str, Any]] = field(default_factory=dict)
    mappings: dict[str, dict[str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = gzip.decompress(raw) if self.headers.get("Content-Encoding") == "gzip" \
                    else raw
                with server._lock:
                    server.requests.append(Recorded(self.command, self.path,
                                                    dict(self.headers.items()), raw, body))
                    answer = server.answers.pop(0) if server.answers else (-1, b"")
                if answer is None:
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                status, text = answer
                if status < 0:
                    handler = server.bulk_hook or server.bulk
                    status, text = handler(body) if "_bulk" in self.path else (200, b"{}")
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            do_POST = do_PUT = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if self.tls is not None:
            self.httpd.socket = self.tls.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        scheme = "https" if self.tls is not None else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                        daemon=True)

    def __enter__(self) -> BulkServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- the bulk API ----------------------------------------------------------------------
    def bulk(self, body: bytes) -> tuple[int, bytes]:
        lines = [line for line in body.split(b"\n") if line]
        if len(lines) % 2:
            return 400, json.dumps({"error": {"type": "illegal_argument_exception",
                                              "reason": "odd number of lines"},
                                    "status": 400}).encode()
        items = []
        errors = False
        for k in range(0, len(lines), 2):
            action_doc = json.loads(lines[k])
            (op, meta), = action_doc.items()
            doc = json.loads(lines[k + 1])
            item = self._item(op, meta, doc)
            errors = errors or item["status"] >= 300
            items.append({op: item})
        return 200, json.dumps({"took": 3, "errors": errors, "items": items}).encode()

    def _item(self, op: str, meta: dict[str, Any], doc: Any) -> dict[str, Any]:
        index = meta["_index"]
        doc_id = meta.get("_id") or f"gen-{next(self._ids)}"
        out: dict[str, Any] = {"_index": index, "_id": doc_id}
        forced = self.item_rule(op, meta, doc) if self.item_rule else None
        if forced is not None:
            status, kind = forced
            out["status"] = status
            if status >= 300:
                out["error"] = {"type": kind, "reason": f"injected {kind}"}
            return out
        store = self.docs.setdefault(index, {})
        source = doc.get("doc", doc) if op == "update" else doc
        conflict = self._map(index, source)
        if conflict:
            out["status"] = 400
            out["error"] = {"type": "mapper_parsing_exception", "reason": conflict,
                            "caused_by": {"type": "illegal_argument_exception",
                                          "reason": "mixed types"}}
            return out
        if op == "create" and doc_id in store:
            out["status"] = 409
            out["error"] = {"type": "version_conflict_engine_exception",
                            "reason": f"[{doc_id}]: version conflict, document already exists"}
            return out
        if op == "update" and doc_id not in store and not doc.get("doc_as_upsert"):
            out["status"] = 404
            out["error"] = {"type": "document_missing_exception",
                            "reason": f"[{doc_id}]: document missing"}
            return out
        out["status"] = 200 if doc_id in store else 201
        if op == "update" and doc_id in store:
            store[doc_id] = {**store[doc_id], **source}
        else:
            store[doc_id] = source
        return out

    def _map(self, index: str, doc: dict[str, Any], prefix: str = "") -> str:
        mapping = self.mappings.setdefault(index, {})
        for key, value in doc.items():
            path = prefix + key
            kind = _kind(value)
            if kind == "null":
                continue
            known = mapping.setdefault(path, kind)
            if known != kind:
                return f"failed to parse field [{path}] of type [{known}]"
            if kind == "object":
                found = self._map(index, value, path + ".")
                if found:
                    return found
        return ""

    def all_docs(self) -> list[Any]:
        return [d for idx in self.docs.values() for d in idx.values()]
