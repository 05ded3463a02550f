"""moto's server with its request parsing made cheap, for benchmarks.

moto decodes a JSON request body once per parameter it reads (three times for PutLogEvents,
with the standard library) and also parses it as a query string; at 1 MB per request that, not
the client, caps what a benchmark can measure. This launcher memoizes the JSON decode (orjson)
and skips the query-string parse of JSON bodies; moto's behaviour is otherwise unchanged
(werkzeug's server still closes the connection after every response).

    python tests/peers/moto_fast.py -H 127.0.0.1 -p PORT
"""

from __future__ import annotations

import sys
import types
from typing import Any

import orjson


def patch() -> None:
    from moto.core import responses

    real_json = responses.json
    last: list[Any] = [None, None]

    def loads(data: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs:
            return real_json.loads(data, *args, **kwargs)
        if data is last[0]:
            return last[1]
        value = orjson.loads(data)
        last[0], last[1] = data, value
        return value

    shim = types.SimpleNamespace(**{k: getattr(real_json, k) for k in dir(real_json)
                                    if not k.startswith("__")})
    shim.loads = loads
    responses.json = shim  # type: ignore[assignment]

    real_qsl = responses.parse_qsl

    def parse_qsl(qs: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(qs, str | bytes) and qs[:1] in ("{", b"{"):
            return []
        return real_qsl(qs, *args, **kwargs)

    responses.parse_qsl = parse_qsl  # type: ignore[assignment]


if __name__ == "__main__":
    patch()
    from moto.server import main
    main(sys.argv[1:])
