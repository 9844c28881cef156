#!/usr/bin/env bash
# Installs the real peers the tests talk to, when they are missing:
#  - sipp (Debian package sip-tester), Chromium (Debian package chromium), curl, jq and
#    redis-server (host/store's Redis backend tests start their own servers);
#  - a Python venv at ${CAMARA_PEERS_VENV:-/opt/camara-peers-venv} with the pinned
#    aiortc/numpy of tests/peers/requirements.txt, for tests/peers/webrtc_peer.py
#    (run as "$VENV/bin/python tests/peers/webrtc_peer.py ...").
#  - the npm packages of the Node drivers in tests/ (each pinned by its package-lock.json).
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
# Debian's Chromium drives the softphone in tests/tests/browser.rs (never a downloaded browser).
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
# curl runs the README's quickstart script (tests/tests/quickstart.rs); jq is its first JSON tool.
command -v curl >/dev/null 2>&1 || packages+=(curl)
command -v jq >/dev/null 2>&1 || packages+=(jq)
# host/store/src/tests.rs runs the Redis backend against redis-server processes of its own.
command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
[ -x "$python" ] || packages+=(python3)
# Debian's python3 needs python3-venv (ensurepip) to create a venv with pip in it.
{ [ -x "$python" ] && "$python" -c 'import ensurepip, venv' >/dev/null 2>&1; } || packages+=(python3-venv)
if [ ${#packages[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "${packages[@]}"
    # Debian's redis-server starts its service on install (where policy-rc.d lets it); the tests
    # start their own servers, on ports of their own, so the packaged one is not left running.
    if [[ " ${packages[*]} " == *" redis-server "* ]]; then
        if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet redis-server 2>/dev/null; then
            $sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
        elif command -v service >/dev/null 2>&1; then
            $sudo service redis-server stop >/dev/null 2>&1 || true
        fi
    fi
fi

# The venv is up to date when it holds a copy of the requirements it was made from.
if ! { [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$venv/.camara-requirements.txt" \
        && "$venv/bin/python" -c 'import aiortc, numpy' >/dev/null 2>&1; }; then
    [ -x "$venv/bin/python" ] || $sudo "$python" -m venv "$venv"
    $sudo "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: \
        -r "$requirements"
    $sudo cp "$requirements" "$venv/.camara-requirements.txt"
fi

# --- oidc-provider (npm) for tests/tests/oidc_interop.rs ------------------------------------
# An external OpenID Provider: the pinned npm package of tests/oidc-provider/package-lock.json,
# installed into tests/oidc-provider/node_modules. Needs Node.js (>= 20) and npm; without them the
# test is skipped locally and fails in CI. Up to date when node_modules holds a copy of the lock
# it was installed from.
oidc_dir="$here/oidc-provider"
if ! { command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; }; then
    echo "install-peers: node and npm are needed for tests/oidc-provider (oidc_interop): not installed" >&2
elif ! { cmp -s "$oidc_dir/package-lock.json" "$oidc_dir/node_modules/.camara-package-lock.json" \
        && [ -f "$oidc_dir/node_modules/oidc-provider/package.json" ]; }; then
    (cd "$oidc_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$oidc_dir/package-lock.json" "$oidc_dir/node_modules/.camara-package-lock.json"
fi
# --- end of oidc-provider -------------------------------------------------------------------

# --- playwright-core (npm) for tests/tests/browser.rs ---------------------------------------
browser_dir="$here/browser"
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
   && ! { cmp -s "$browser_dir/package-lock.json" "$browser_dir/node_modules/.camara-package-lock.json" \
          && [ -f "$browser_dir/node_modules/playwright-core/package.json" ]; }; then
    (cd "$browser_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
    cp "$browser_dir/package-lock.json" "$browser_dir/node_modules/.camara-package-lock.json"
fi
# --- end of playwright-core -----------------------------------------------------------------

# --- schemathesis (PyPI) for tests/tests/schemathesis.rs ------------------------------------
# A pinned release, from wheels only, in the peers' venv (made above): "$venv/bin/schemathesis".
schemathesis_version=4.32.5
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -qx "schemathesis, version $schemathesis_version"; then
    $sudo "$venv/bin/pip" install -q --disable-pip-version-check --only-binary=:all: \
        "schemathesis==$schemathesis_version"
fi
# --- end of schemathesis --------------------------------------------------------------------

# --- kamailio (Debian) for tests/tests/kamailio.rs and host/sip/tests/kamailio_tls.rs --------
# A real SIP registrar and proxy. Debian's `kamailio` package holds every module the test's
# config (tests/kamailio/kamailio.cfg) loads: tm, sl, rr, pv, maxfwd, textops, siputils, xlog,
# sanity, usrloc, registrar and auth (db_text and auth_db too, unused); `kamailio-tls-modules`
# adds tls.so (OpenSSL) for SIP over TLS (host/sip/tests/kamailio_tls/kamailio.cfg). The tests
# start their own instances in the foreground; the packaged service is not used (and is stopped
# when the package starts it).
if ! { [ -x /usr/sbin/kamailio ] && compgen -G '/usr/lib/*/kamailio/modules/tls.so' >/dev/null; }; then
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends kamailio kamailio-tls-modules >/dev/null
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet kamailio 2>/dev/null; then
        $sudo systemctl disable --now kamailio >/dev/null 2>&1 || true
    fi
fi
# --- end of kamailio ------------------------------------------------------------------------
