"""Monitoring API (Fluent Bit's /api/v1 and /api/v2), health and readiness, hot reload."""
