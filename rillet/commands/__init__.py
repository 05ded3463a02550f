"""Subcommands of the ``rillet`` command line: ``check``, ``trace`` and ``top``."""
