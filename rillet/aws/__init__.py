"""The AWS layer shared by every AWS output.

- :mod:`rillet.aws.credentials`: botocore's credentials chain (environment, shared files and
  profiles, ``credential_process``, IRSA, ECS/EKS Pod Identity container credentials, IMDSv2),
  an optional STS ``AssumeRole`` on top (``role_arn``), refreshed off the event loop.
- :mod:`rillet.aws.client`: SigV4-signed requests (botocore's signer) over one pooled aiohttp
  session per output; bodies arrive already serialized; endpoints from botocore's data.
- :mod:`rillet.aws.policy`: one delivery policy: what is retryable, what is throttling, what can
  never succeed, and an adaptive concurrency limit that slows the whole output when AWS pushes
  back.

An output builds these three from its options (``region``, ``endpoint``, ``profile``,
``role_arn``, ``external_id``, ``sts_endpoint``, ``extra_user_agent``, ``auto_retry_requests``)
and adds only its encoder and its batch limits; docs/aws.md has the details.
"""
