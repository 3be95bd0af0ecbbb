#!/usr/bin/env bash
# Container image benchmark: our registry client and cache beside `skopeo copy` + `umoci unpack` of the same
# ~10 MiB image from one real registry on loopback, then deploy → first answer of that image on a node in the
# namespace sandbox, with an empty cache (cold pull-and-start) and with the image cached (warm start).
#   scripts/bench-oci.sh [ROUNDS]      (default 7)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
echo "== building (release)" >&2
swift build -c release --package-path Benchmarks --product oci-bench >&2
swift build -c release --package-path Benchmarks --product nex-agent >&2
examples/echoservice/build.sh >&2
bin="$PWD/Benchmarks/.build/release"
exec "$bin/oci-bench" "$bin/nex-agent" "$PWD/examples/echoservice/echoservice" "${1:-7}"
