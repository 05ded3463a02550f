"""``rillet demo``: the seed pipeline end to end on one machine (``make run``).

- :mod:`rillet.demo.workload`: a node's pods, their Docker json-file logs, nginx servers and a
  ``hey``-style load generator.
- :mod:`rillet.demo.run`: starts the stand-ins and rillet, shows what arrived, cleans up.
- ``seed.conf``: the seed's configuration, paths and endpoints from the environment.
"""
