from __future__ import annotations

# Register the test plugins of the engine tests and of these tests.
import tests.engine.plugins
import tests.monitor.plugins  # noqa: F401
