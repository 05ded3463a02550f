from tests.peers.fixtures import aws_env  # noqa: F401
