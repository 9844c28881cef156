#!/usr/bin/env bash
# The CAMARA WebRTC APIs from a shell, against a gateway on its embedded defaults
# (`cargo run --release -p camara-gateway -- run`):
#
#   1. an access token from the built-in OAuth server (client_credentials, the development client
#      `demo-script`, whose tokens are for alice's line +818000000001),
#   2. a device registration (webrtc-registration),
#   3. a Notification Relay channel, and a subscription whose sink is that channel (webrtc-events),
#   4. a call to the demo network's echo number, +818000000900, with a WebRTC SDP offer
#      (webrtc-call-handling): the demo network answers it.
#
# Usage: examples/curl/quickstart.sh [BASE_URL]     (default http://127.0.0.1:8080)
#
# Progress and the API's answers go to stderr; stdout gets one `name=value` line per resource
# created (accessToken, registrationId, subscriptionId, mediaSessionId, websocketUrl), so that
# another script can `eval` or parse it. Nothing is deleted: read the resources back with the
# token, or end the call with `DELETE /webrtc-call-handling/v0.3/sessions/{mediaSessionId}`.
#
# Needs curl, and jq or else python3 for JSON (QUICKSTART_JSON=python3 picks python3 even when jq
# is installed). CLIENT_ID and CLIENT_SECRET override the development client.
set -euo pipefail

BASE="${1:-http://127.0.0.1:8080}"
BASE="${BASE%/}"
CLIENT_ID="${CLIENT_ID:-demo-script}"
# Development only: published in the README, accepted by the built-in OAuth server alone.
CLIENT_SECRET="${CLIENT_SECRET:-demo-script-dev-only-secret}"

JSON_TOOL="${QUICKSTART_JSON:-}"
if [[ -z "$JSON_TOOL" ]]; then
  if command -v jq >/dev/null; then JSON_TOOL=jq; else JSON_TOOL=python3; fi
fi
if ! command -v "$JSON_TOOL" >/dev/null; then
  echo "quickstart: needs jq or python3 for JSON" >&2
  exit 1
fi

# The member at a path like `.sinkCredential.accessToken` of the JSON on stdin: a string as it
# is, anything else as compact JSON.
field() {
  if [[ "$JSON_TOOL" == jq ]]; then
    jq -cer "$1"
  else
    python3 -c '
import json, sys
value = json.load(sys.stdin)
for name in sys.argv[1].strip(".").split("."):
    value = value[name]
print(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
' "$1"
  fi
}

# Pretty-prints the JSON on stdin (to stderr), or shows it as it is when it is not JSON.
show() {
  local text
  text="$(cat)"
  if [[ "$JSON_TOOL" == jq ]]; then
    jq . <<<"$text" >&2 2>/dev/null || echo "$text" >&2
  else
    python3 -m json.tool <<<"$text" >&2 2>/dev/null || echo "$text" >&2
  fi
}

# `request METHOD URL [curl arguments...]`: the response body on stdout; any status of 400 or
# more stops the script with the status and the body.
request() {
  local method="$1" url="$2" answer status body
  shift 2
  answer="$(curl -sS -X "$method" -w '\n%{http_code}' "$@" "$url")"
  status="${answer##*$'\n'}"
  body="${answer%$'\n'*}"
  if (( status >= 400 )); then
    echo "quickstart: $method $url answered $status:" >&2
    show <<<"$body"
    exit 1
  fi
  printf '%s' "$body"
}

# `api METHOD PATH [JSON body] [curl arguments...]`: a CAMARA API call with the access token.
api() {
  local method="$1" path="$2" body="${3:-}"
  shift 2
  (( $# > 0 )) && shift
  local args=(-H "Authorization: Bearer $ACCESS_TOKEN" -H "x-correlator: quickstart-$$")
  [[ -n "$body" ]] && args+=(-H "Content-Type: application/json" --data-binary "$body")
  request "$method" "$BASE$path" "${args[@]}" "$@"
}

step() { printf '\n== %s\n' "$*" >&2; }

new_uuid() {
  if [[ -r /proc/sys/kernel/random/uuid ]]; then
    cat /proc/sys/kernel/random/uuid
  elif command -v uuidgen >/dev/null; then
    uuidgen | tr 'A-Z' 'a-z'
  else
    python3 -c 'import uuid; print(uuid.uuid4())'
  fi
}

step "1. Access token: client_credentials for $CLIENT_ID at $BASE/oauth/token"
# The scopes of the operations below (the CAMARA files' `security` sections).
SCOPES="webrtc-registration:sessions:create webrtc-registration:sessions:read \
webrtc-events:org.camaraproject.webrtc-events.v0.session-status:create \
webrtc-events:org.camaraproject.webrtc-events.v0.session-invitation:create webrtc-events:read \
webrtc-call-handling:sessions:create webrtc-call-handling:sessions:read"
TOKEN_ANSWER="$(request POST "$BASE/oauth/token" -u "$CLIENT_ID:$CLIENT_SECRET" \
  --data-urlencode grant_type=client_credentials --data-urlencode "scope=$SCOPES")"
ACCESS_TOKEN="$(field .access_token <<<"$TOKEN_ANSWER")"
echo "token_type $(field .token_type <<<"$TOKEN_ANSWER"), expires_in $(field .expires_in <<<"$TOKEN_ANSWER") s" >&2

DEVICE_ID="$(new_uuid)"
step "2. Register device $DEVICE_ID: POST /webrtc-registration/v0.3/sessions"
REGISTRATION="$(api POST /webrtc-registration/v0.3/sessions "{\"deviceId\": \"$DEVICE_ID\"}")"
show <<<"$REGISTRATION"
REGISTRATION_ID="$(field .registrationId <<<"$REGISTRATION")"
PHONE_NUMBER="$(field .regInfo.phoneNumber <<<"$REGISTRATION")"

step "3a. A Notification Relay channel for the events: POST /relay/channels"
CHANNEL="$(api POST /relay/channels)"
show <<<"$CHANNEL"
SINK_URL="$(field .sinkUrl <<<"$CHANNEL")"
SINK_CREDENTIAL="$(field .sinkCredential <<<"$CHANNEL")"
WEBSOCKET_URL="$(field .websocketUrl <<<"$CHANNEL")?token=$(field .websocketToken <<<"$CHANNEL")"

step "3b. Subscribe to session-status and session-invitation: POST /webrtc-events/v0.2/subscriptions"
SUBSCRIPTION="$(api POST /webrtc-events/v0.2/subscriptions "{
  \"protocol\": \"HTTP\",
  \"sink\": \"$SINK_URL\",
  \"sinkCredential\": $SINK_CREDENTIAL,
  \"types\": [
    \"org.camaraproject.webrtc-events.v0.session-status\",
    \"org.camaraproject.webrtc-events.v0.session-invitation\"
  ],
  \"config\": {\"subscriptionDetail\": {\"deviceId\": \"$DEVICE_ID\"}}
}")"
show <<<"$SUBSCRIPTION"
SUBSCRIPTION_ID="$(field .id <<<"$SUBSCRIPTION")"

step "4. Call the echo number +818000000900: POST /webrtc-call-handling/v0.3/sessions (registrationId header)"
# A browser's audio offer (ICE credentials and DTLS fingerprint of a real one). No peer is behind
# it: the gateway's ICE checks go unanswered, and the call ends `Terminated` on its own once the
# device leg is given up (`[media] device_failure_grace_seconds`), without audio.
OFFER='v=0\r\no=- 8066321617929821805 2 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0\r\nm=audio 42988 UDP/TLS/RTP/SAVPF 111 0 8\r\nc=IN IP4 127.0.0.1\r\na=ice-ufrag:4eKp\r\na=ice-pwd:D4sF5Pv9vx9ggaqxBlHbAFMx\r\na=fingerprint:sha-256 CF:56:D8:57:9B:68:B2:1C:F6:ED:6C:C0:02:7C:96:C2:88:A3:C2:38:AD:A2:CA:F5:0D:47:BB:81:74:7B:75:17\r\na=setup:actpass\r\na=mid:0\r\na=sendrecv\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n'
SESSION="$(api POST /webrtc-call-handling/v0.3/sessions "{
  \"originatorAddress\": \"tel:$PHONE_NUMBER\",
  \"receiverAddress\": \"tel:+818000000900\",
  \"offer\": {\"sdp\": \"$OFFER\"}
}" -H "registrationId: $REGISTRATION_ID")"
show <<<"$SESSION"
MEDIA_SESSION_ID="$(field .mediaSessionId <<<"$SESSION")"

step "5. The session as the gateway has it now: GET /webrtc-call-handling/v0.3/sessions/$MEDIA_SESSION_ID"
STATUS="$(api GET "/webrtc-call-handling/v0.3/sessions/$MEDIA_SESSION_ID" | field .status)"
echo "status: $STATUS" >&2
echo "(its events wait at the relay for a WebSocket on $WEBSOCKET_URL)" >&2

cat <<EOF
accessToken=$ACCESS_TOKEN
registrationId=$REGISTRATION_ID
subscriptionId=$SUBSCRIPTION_ID
mediaSessionId=$MEDIA_SESSION_ID
websocketUrl=$WEBSOCKET_URL
EOF
