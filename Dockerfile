# syntax=docker/dockerfile:1
# rillet's container image: drop-in for manifests written for the AWS for Fluent Bit image
# (configuration at /fluent-bit/etc/fluent-bit.conf, parsers at /fluent-bit/parsers/parsers.conf,
# /fluent-bit/bin/fluent-bit). See docs/deploy.md.
#
#   docker build -t rillet:0.1.0 .
#
# The base image is pinned to an exact tag (Python 3.11, the version the test suite runs on).
# Release builds should also pin its digest (python:3.11.13-slim-bookworm@sha256:...), looked up
# when the image is built: it could not be looked up where this file was written.
ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

# -- build: a virtual environment holding rillet and its runtime dependencies only -----------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
RUN python -m venv /opt/rillet
WORKDIR /src
# requirements.txt pins the runtime dependencies; deploy/docker/constraints.txt pins what they
# pull in, at the versions the test suite ran with. No development dependency is installed.
COPY requirements.txt ./
COPY deploy/docker/constraints.txt ./constraints.txt
RUN /opt/rillet/bin/pip install --only-binary=:all: -r requirements.txt -c constraints.txt
COPY pyproject.toml README.md ./
COPY rillet ./rillet
# The project itself, built with a pinned setuptools; then the build tools leave, and every
# module is compiled now because the root filesystem is read-only at run time.
RUN /opt/rillet/bin/pip install setuptools==84.2.1 \
 && /opt/rillet/bin/pip install --no-deps --no-build-isolation . \
 && /opt/rillet/bin/pip uninstall --yes setuptools pip \
 && /opt/rillet/bin/python -m compileall -q -j 0 /opt/rillet/lib

# -- runtime ------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
COPY --from=build /opt/rillet /opt/rillet
COPY rillet/parsers/builtin/parsers.conf /fluent-bit/parsers/parsers.conf
# The default configuration: the seed pipeline (tail -> kubernetes -> CloudWatch Logs) with the
# monitoring server on :2020; the Kubernetes manifests mount their ConfigMap over it.
COPY deploy/kubernetes/base/fluent-bit.conf /fluent-bit/etc/fluent-bit.conf
# fluent-bit's path, for manifests that run `/fluent-bit/bin/fluent-bit -c ...`, and the entry
# point, which also accepts that path as its first argument (ECS commands written for the AWS
# image, which has no ENTRYPOINT).
COPY --chmod=0755 deploy/docker/entrypoint.sh /fluent-bit/bin/entrypoint.sh
RUN ln -s /opt/rillet/bin/rillet /fluent-bit/bin/fluent-bit
ENV PATH=/opt/rillet/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# A numeric non-root user (Kubernetes' runAsNonRoot can only verify a numeric one). The node
# DaemonSet overrides it with uid 0 to read root-only host log files (docs/deploy.md).
USER 10001:10001
WORKDIR /fluent-bit
EXPOSE 2020
ENTRYPOINT ["/fluent-bit/bin/entrypoint.sh"]
CMD ["-c", "/fluent-bit/etc/fluent-bit.conf"]
