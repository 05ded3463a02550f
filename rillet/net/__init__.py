"""Network pieces shared by plugins that talk to peers themselves (not through the AWS layer).

- :mod:`rillet.net.tls`: Fluent Bit's ``tls.*`` options as one option table, turned into an
  :class:`ssl.SSLContext` at startup (bad files are configuration errors).
- :mod:`rillet.net.http`: one pooled aiohttp client per output instance (keep-alive, TLS,
  timeouts), answering every request with an :class:`~rillet.net.http.HttpResponse` (status 0
  for a network error) instead of raising.
- :mod:`rillet.net.sigv4`: AWS SigV4 signing of such requests (``aws_auth`` of the es,
  opensearch and http outputs) through the AWS layer's credentials chain.
"""
