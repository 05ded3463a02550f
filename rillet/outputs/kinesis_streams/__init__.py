"""``kinesis_streams`` output (also ``kinesis``): records to Amazon Kinesis Data Streams.

Two plugin names as in Fluent Bit: ``kinesis_streams`` is the C plugin and ``kinesis`` AWS's Go
plugin; both take the options of both (docs/kinesis.md). They differ where the two plugins did:
``%L`` in ``time_key_format`` is nanoseconds for ``kinesis_streams`` and milliseconds for
``kinesis``, and records end with a newline by default for ``kinesis_streams`` only (the Go
plugin's ``append_newline`` defaults to off).

Stages: record encoding and packing (:mod:`rillet.outputs.kinesis_common`, KPL aggregates from
:mod:`rillet.outputs.kpl`), PutRecords requests within the limits (500 records, 5 MiB counting
data and partition keys; 1 MiB per record), the shared AWS delivery policy. Only the records
PutRecords reports as failed are sent again, and with ``partition_key`` a key's records keep
their order.
"""

from __future__ import annotations

from typing import Any

from rillet.config.options import Option, T
from rillet.engine.plugin import register
from rillet.outputs.kinesis_common import SHARED_OPTIONS, ApiShape, StreamOutput

MAX_RECORD = 1_048_576  # data + partition key
MAX_REQUEST = 5_242_880  # data + partition keys of every record
MAX_RECORDS = 500


@register
class KinesisStreams(StreamOutput):
    name = "kinesis_streams"
    description = "Send logs to Amazon Kinesis Data Streams"
    default_workers = 1
    service = "kinesis"
    shape = ApiShape("PutRecords", "StreamName", "Records", "FailedRecordCount", MAX_RECORDS,
                     MAX_REQUEST)
    what = "Kinesis"
    prefix = "kinesis"
    stream_option = "stream"
    max_record = MAX_RECORD
    keyed = True
    compressions = ("gzip", "zlib", "zstd")
    l_digits = 9
    newline_default = True
    options = (
        Option("stream", T.STR, None, "name of the Kinesis data stream (required)"),
        Option("partition_key", T.STR, None, "record key whose value is the partition key; "
               "nested keys as kubernetes->pod_name; random when unset or missing"),
        Option("compression", T.STR, None, "compress each record: gzip, zlib or zstd"),
        Option("aggregation", T.BOOL, "false", "KPL aggregation: many records per Kinesis "
               "record"),
        *SHARED_OPTIONS,
    )

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if self.opts["aggregation"]:
            if self.opts["simple_aggregation"]:
                raise ValueError("aggregation and simple_aggregation cannot both be on")
            self.mode = "kpl"
            if self.ordered:
                self.log.info("partition_key with aggregation: each aggregate is routed by "
                              "the partition key of its first record")


@register
class Kinesis(KinesisStreams):
    """The Go plugin's name: ``%L`` is milliseconds and ``append_newline`` defaults to off."""

    name = "kinesis"
    l_digits = 3
    newline_default = False
