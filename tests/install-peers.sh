#!/usr/bin/env bash
# Installs the real peers the tests talk to (Debian packages), when they are missing.
set -euo pipefail
packages=()
command -v sipp >/dev/null 2>&1 || packages+=(sip-tester)
if [ ${#packages[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${packages[@]}"
fi
