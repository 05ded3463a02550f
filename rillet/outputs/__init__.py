"""Output plugins. ``MODULES`` maps each plugin name (and alias) to the module defining it; the
registry imports a module only when a configuration names its plugin (so a pipeline without AWS
outputs never loads botocore or aiohttp)."""

MODULES = {
    "cloudwatch_logs": "rillet.outputs.cloudwatch_logs",
    "cloudwatch": "rillet.outputs.cloudwatch_logs",
    "file": "rillet.outputs.file",
    "null": "rillet.outputs.null",
    "stdout": "rillet.outputs.stdout",
}
