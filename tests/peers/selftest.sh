#!/usr/bin/env bash
# Self-test of the aiortc test peer without the gateway (see selftest.py).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
exec "${CAMARA_PEERS_VENV:-/opt/camara-peers-venv}/bin/python" "$here/selftest.py" "$@"
