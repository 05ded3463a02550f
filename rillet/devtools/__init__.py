"""Development tools: stand-ins for the services rillet talks to, for tests and demos.

- :mod:`rillet.devtools.kube_api`: a Kubernetes API server (and kubelet ``/pods``) stand-in
  serving Pod and Namespace objects from a folder over HTTPS with bearer-token auth.
- :mod:`rillet.devtools.moto_server`: moto's AWS server (CloudWatch Logs, Kinesis, Firehose, S3,
  STS) as a loopback subprocess.
"""
