#!/usr/bin/env bash
# Starts a Redis (append-only, synced on every write) and the two gateway nodes of node-a.toml
# and node-b.toml on loopback; Ctrl-C stops all three. Needs redis-server (Debian: redis-server).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$here/../.."
data="$(mktemp -d)"
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$data"' EXIT
redis-server --port 6390 --bind 127.0.0.1 --save '' --appendonly yes --appendfsync always --dir "$data" &
cargo build --release -p camara-gateway --manifest-path "$root/Cargo.toml"
gateway="$root/target/release/camara-gateway"
"$gateway" run --config "$here/node-a.toml" &
"$gateway" run --config "$here/node-b.toml" &
wait
