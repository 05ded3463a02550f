"""Output plugins. ``MODULES`` maps each plugin name (and alias) to the module defining it; the
registry imports a module only when a configuration names its plugin (so a pipeline without AWS
outputs never loads botocore or aiohttp)."""

MODULES = {
    "cloudwatch_logs": "rillet.outputs.cloudwatch_logs",
    "cloudwatch": "rillet.outputs.cloudwatch_logs",
    "es": "rillet.outputs.es",
    "elasticsearch": "rillet.outputs.es",
    "opensearch": "rillet.outputs.opensearch",
    "http": "rillet.outputs.http",
    "file": "rillet.outputs.file",
    "forward": "rillet.outputs.forward",
    "firehose": "rillet.outputs.kinesis_firehose",
    "kinesis": "rillet.outputs.kinesis_streams",
    "kinesis_firehose": "rillet.outputs.kinesis_firehose",
    "kinesis_streams": "rillet.outputs.kinesis_streams",
    "null": "rillet.outputs.null",
    "s3": "rillet.outputs.s3",
    "stdout": "rillet.outputs.stdout",
}
