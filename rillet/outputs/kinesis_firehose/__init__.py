"""``kinesis_firehose`` output (also ``firehose``): records to Amazon Data Firehose.

Two plugin names as in Fluent Bit: ``kinesis_firehose`` is the C plugin and ``firehose`` AWS's Go
plugin; both take the options of both (docs/kinesis.md). ``%L`` in ``time_key_format`` is
nanoseconds for ``kinesis_firehose`` and milliseconds for ``firehose``; every record ends with a
newline unless ``append_newline`` is off (both plugins always add one).

Stages: record encoding (:mod:`rillet.outputs.kinesis_common`), PutRecordBatch requests within
the limits (500 records, 4 MiB; 1,000 KiB per record), the shared AWS delivery policy. Only the
records PutRecordBatch reports as failed are sent again.
"""

from __future__ import annotations

from rillet.config.options import Option, T
from rillet.engine.plugin import register
from rillet.outputs.kinesis_common import SHARED_OPTIONS, ApiShape, StreamOutput

MAX_RECORD = 1_024_000
MAX_REQUEST = 4_194_304
MAX_RECORDS = 500


@register
class KinesisFirehose(StreamOutput):
    name = "kinesis_firehose"
    description = "Send logs to Amazon Data Firehose"
    default_workers = 1
    service = "firehose"
    shape = ApiShape("PutRecordBatch", "DeliveryStreamName", "RequestResponses",
                     "FailedPutCount", MAX_RECORDS, MAX_REQUEST)
    what = "Firehose"
    prefix = "firehose"
    stream_option = "delivery_stream"
    max_record = MAX_RECORD
    keyed = False
    compressions = ("gzip", "zstd")
    l_digits = 9
    newline_default = True
    options = (
        Option("delivery_stream", T.STR, None, "name of the Firehose delivery stream "
               "(required)"),
        Option("compression", T.STR, None, "compress each record: gzip or zstd"),
        *SHARED_OPTIONS,
    )


@register
class Firehose(KinesisFirehose):
    """The Go plugin's name: ``%L`` is milliseconds."""

    name = "firehose"
    l_digits = 3
