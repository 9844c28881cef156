#!/usr/bin/env bash
# Installs the real peers the tests talk to, when they are missing:
#  - sipp (Debian package sip-tester);
#  - a Python venv at ${CAMARA_PEERS_VENV:-/opt/camara-peers-venv} with the pinned
#    aiortc/numpy of tests/peers/requirements.txt, for tests/peers/webrtc_peer.py
#    (run as "$VENV/bin/python tests/peers/webrtc_peer.py ...").
# Idempotent and quiet when everything is already there.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${CAMARA_PEERS_VENV:-/opt/camara-peers-venv}"
requirements="$here/peers/requirements.txt"
python=/usr/bin/python3
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

packages=()
command -v sipp >/dev/null 2>&1 || packages+=(sip-tester)
[ -x "$python" ] || packages+=(python3)
# Debian's python3 needs python3-venv (ensurepip) to create a venv with pip in it.
{ [ -x "$python" ] && "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; } || packages+=(python3-venv)
if [ ${#packages[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${packages[@]}"
fi

# The venv is up to date when it holds a copy of the requirements it was made from.
if ! { [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$venv/.camara-requirements.txt" \
        && "$venv/bin/python" -c 'import aiortc, numpy' >/dev/null 2>&1; }; then
    [ -x "$venv/bin/python" ] || $sudo "$python" -m venv "$venv"
    $sudo "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: \
        -r "$requirements"
    $sudo cp "$requirements" "$venv/.camara-requirements.txt"
fi
