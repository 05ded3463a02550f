#!/bin/sh
# The image's entry point: run rillet with the given arguments.
# Task definitions and manifests written for Fluent Bit's images often repeat the binary as the
# first argument (an ECS "command" is the whole command line with the AWS image, which has no
# ENTRYPOINT: ["/fluent-bit/bin/fluent-bit", "-c", "/fluent-bit/etc/fluent-bit.conf"]). Such a
# leading binary is dropped, so those run unchanged; anything else is passed to rillet as is.
case "${1:-}" in
    /fluent-bit/bin/fluent-bit|fluent-bit|/opt/rillet/bin/rillet|rillet) shift ;;
esac
exec "${RILLET_BIN:-/opt/rillet/bin/rillet}" "$@"
