#!/usr/bin/env bash
# Builds the demo app into a local image, fleet-demo:VERSION, with no
# registry: a static binary in a tar, turned into an image by docker import.
set -euo pipefail
version="${1:?usage: build-image.sh VERSION}"
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${version}" -o "$work/demo" "$here"
tar -C "$work" -c demo | docker import \
  -c 'ENTRYPOINT ["/demo"]' -c 'EXPOSE 8080' -c "LABEL org.opencontainers.image.version=${version}" \
  - "fleet-demo:${version}" >/dev/null
echo "built fleet-demo:${version}"
