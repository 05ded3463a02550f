"""Real network peers for tests, started on loopback.

- :class:`~tests.peers.moto_server.MotoServer`: moto's server (every AWS API it emulates) as a
  subprocess on a free port.
- :class:`~tests.peers.fault_proxy.FaultProxy`: a small HTTP proxy in front of it that injects
  faults by rule: throttling, 5xx, dropped connections (before or after forwarding), canned
  responses (partial failures), and side effects between calls (e.g. delete a log stream).

Fixtures (``moto_server``, ``fault_proxy``) live in :mod:`tests.peers.fixtures`; import them in a
``conftest.py`` to use them.
"""
