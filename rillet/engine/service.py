"""The ``[SERVICE]`` option table (Fluent Bit's flb_config.c defaults)."""

from __future__ import annotations

from rillet.config.options import Option, T
from rillet.log import LEVEL_CHOICES


def _positive(value: float) -> str | None:
    return None if value > 0 else "must be greater than 0"


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "must be a TCP port (0-65535)"


def _not_yet(feature: str, issue: str):  # type: ignore[no-untyped-def]
    def check(value: bool) -> str | None:
        return f"{feature} is not available in this version ({issue})" if value else None
    return check


SERVICE_OPTIONS: tuple[Option, ...] = (
    Option("flush", T.DOUBLE, "1", "seconds between flushes of pending chunks to outputs",
           check=_positive),
    Option("grace", T.TIME, "5", "seconds to deliver buffered records after SIGTERM/SIGINT"),
    Option("daemon", T.BOOL, "off", "run in the background (not supported: run under a "
           "supervisor)", check=_not_yet("Daemon mode", "use a supervisor or Kubernetes")),
    Option("log_file", T.STR, None, "write rillet's own log to this file instead of stderr"),
    Option("log_level", T.STR, "info", "off, error, warn, info, debug or trace",
           choices=LEVEL_CHOICES),
    Option("parsers_file", T.STR, None, "parsers file to load (may repeat)", multiple=True),
    Option("scheduler.base", T.DOUBLE, "5", "base of the retry backoff, seconds",
           check=_positive),
    Option("scheduler.cap", T.DOUBLE, "2000", "cap of the retry backoff, seconds",
           check=_positive),
    Option("json.escape_unicode", T.BOOL, "on", "escape non-ASCII characters as \\uXXXX in "
           "JSON output"),
    Option("json.convert_nan_to_null", T.BOOL, "off", "write NaN and infinities as null in JSON "
           "output"),
    Option("multiline_buffer_limit", T.SIZE, "2MB", "largest multiline message before "
           "truncation"),
    Option("http_server", T.BOOL, "off", "monitoring HTTP server (/api/v1, /api/v2)"),
    Option("http_listen", T.STR, "0.0.0.0", "monitoring server address"),
    Option("http_port", T.INT, "2020", "monitoring server port", check=_port),
    Option("health_check", T.BOOL, "off", "serve /api/v1/health and /api/v2/health"),
    Option("hc_errors_count", T.INT, "5", "output errors per period before unhealthy"),
    Option("hc_retry_failure_count", T.INT, "5", "failed retries per period before unhealthy"),
    Option("hc_period", T.INT, "60", "health check period, seconds", check=_positive),
    Option("hc_stall_timeout", T.TIME, "300", "unhealthy when an output has had records pending "
           "and no successful delivery for this long, seconds (0 = off; rillet only)"),
    Option("hot_reload", T.BOOL, "off", "reload the configuration on SIGHUP and on "
           "POST/PUT /api/v2/reload"),
    Option("storage.path", T.STR, None, "directory for filesystem buffering"),
    Option("storage.sync", T.STR, "normal", "normal or full", choices=("normal", "full")),
    Option("storage.checksum", T.BOOL, "off", "checksum chunk files"),
    Option("storage.metrics", T.BOOL, "off", "storage metrics in the monitoring API"),
    Option("storage.max_chunks_up", T.INT, "128", "chunks kept in memory with filesystem "
           "storage"),
    Option("storage.backlog.mem_limit", T.SIZE, "100M", "memory for replaying stored chunks"),
    Option("storage.delete_irrecoverable_chunks", T.BOOL, "off", "delete corrupt chunk files "
           "instead of moving them to storage.path/quarantine"),
    Option("storage.keep.rejected", T.BOOL, "off", "write records outputs give up on (dead "
           "letters) to storage.rejected.path"),
    Option("storage.rejected.path", T.STR, "rejected", "dead-letter directory (relative to "
           "storage.path)"),
    Option("storage.rejected.max_size", T.SIZE, "100M", "size at which an output's dead-letter "
           "file is rotated (one old file kept; rillet)"),
)
