"""rillet: a log processor and forwarder for Kubernetes that runs Fluent Bit configurations."""

__version__ = "0.1.0"
