"""Filesystem buffering: chunk files (``format``), the store (``store``), and the report served
at ``/api/v1/storage`` (``report``). See docs/storage.md."""
