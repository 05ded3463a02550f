"""Input plugins; importing this package registers them."""

from rillet.inputs import (
    dummy,  # noqa: F401
    tail,  # noqa: F401
)
