"""Filter plugins."""

import rillet.filters.multiline
import rillet.filters.parser  # noqa: F401
