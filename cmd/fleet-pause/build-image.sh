#!/usr/bin/env bash
# Builds fleet-pause into the local image fleet-pause:1 with no registry: a
# static binary in a tar, turned into an image by docker import.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$work/pause" "$here"
tar -C "$work" -c pause | docker import -c 'ENTRYPOINT ["/pause"]' - "fleet-pause:1" >/dev/null
echo "built fleet-pause:1"
