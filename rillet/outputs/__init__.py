"""Output plugins; importing this package registers them."""

from rillet.outputs import cloudwatch_logs, file, null, stdout  # noqa: F401
