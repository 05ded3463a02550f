from tests.peers.fixtures import aws_env, fault_proxy, moto_server  # noqa: F401
