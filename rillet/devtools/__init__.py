"""Development tools: stand-ins for the services rillet talks to, for tests and demos.

- :mod:`rillet.devtools.kube_api`: a Kubernetes API server (and kubelet ``/pods``) stand-in
  serving Pod and Namespace objects from a folder over HTTPS with bearer-token auth.
- :mod:`rillet.devtools.imds`: an EC2 Instance Metadata Service (IMDSv1/v2, instance tags).
- :mod:`rillet.devtools.moto_server`: moto's AWS server (CloudWatch Logs, Kinesis, Firehose, S3,
  STS) as a loopback subprocess.
"""
