#!/usr/bin/env bash
# One command from a fresh clone to a running daemon with the demo function:
# sets up the machine, starts `kiln serve --dev` on 127.0.0.1:7070 and deploys
# guest-sdk/c/examples/hello.c as "hello". Ctrl-C stops the daemon.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh

export KILN_DATA_DIR="${KILN_DATA_DIR:-$PWD/.kiln}"
node bin/kiln.js serve --dev &
daemon=$!
trap 'kill -TERM $daemon 2>/dev/null; wait $daemon' INT TERM

for _ in $(seq 1 50); do
  node -e "fetch('http://127.0.0.1:7070/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))" && break
  kill -0 $daemon 2>/dev/null || { echo "quickstart: the daemon did not start" >&2; exit 1; }
  sleep 0.2
done
node bin/kiln.js deploy hello build/guests/c/hello.wasm --env GREETING=Hello
cat <<'MSG'

Kiln is running in dev mode with the demo function "hello". In another terminal:
  node bin/kiln.js invoke hello --data 'greet:world'
  node bin/kiln.js invoke hello --data 'make me loud'
  node bin/kiln.js ls
Ctrl-C here stops the daemon.
MSG
wait $daemon
