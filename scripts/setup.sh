#!/usr/bin/env bash
# Installs what Kiln needs on a fresh Debian machine and builds it:
# the guest toolchain and the interop test's Python packages from Debian,
# the npm dependencies, the TypeScript build and every guest from source.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(clang lld wasi-libc libclang-rt-dev-wasm32 libc++-dev-wasm32 libc++abi-14-dev-wasm32 rustc libstd-rust-dev-wasm32 python3 python3-msgpack python3-websockets)

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
npm run --silent build:guests
