"""Output plugins; importing this package registers them."""

from rillet.outputs import file, null, stdout  # noqa: F401
