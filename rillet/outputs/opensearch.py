"""``opensearch`` output: the ``es`` output's bulk delivery with OpenSearch's option set.

Differences from ``es``, as in Fluent Bit's out_opensearch: ``Index`` may be a record-accessor
template (``logs-$kubernetes['namespace_name']``); a record whose template cannot be rendered
goes to ``Index`` as written ("default to static index"). There is no ``Target_Index``,
``HTTP_API_Key``, ``Cloud_ID`` or ``Cloud_Auth``; ``AWS_Profile`` shows ``default`` (the chain's
default profile, so the environment's credentials are still used unless it is set explicitly),
and generated ids are printed in upper-case hex. Everything else (per-item outcomes, retries,
dead letters) is :class:`rillet.outputs.es.BulkOutput`.
"""

from __future__ import annotations

from rillet.config.options import Option, T
from rillet.engine.plugin import register
from rillet.outputs.es import BULK_OPTIONS, BulkOutput


def _options() -> tuple[Option, ...]:
    out: list[Option] = []
    for opt in BULK_OPTIONS:
        if opt.name == "aws_profile":
            opt = Option("aws_profile", T.STR, "default", opt.doc)
        elif opt.name == "index":
            opt = Option("index", T.STR, "fluent-bit", "index name; may be a record-accessor "
                         "template ($key['sub'])")
        out.append(opt)
    return tuple(out)


@register
class OpenSearch(BulkOutput):
    name = "opensearch"
    description = "OpenSearch"
    upper_case_ids = True
    index_is_template = True
    options = _options()
