#!/usr/bin/env bash
# The API contract test: schemathesis (from PyPI) generates requests from the
# document the server serves at /openapi.json and checks every answer
# against it (status codes, bodies, content types, valid data accepted,
# invalid data refused). It runs twice against one server on SQLite: with
# the admin key, and with a user's login token. Bounded: 20 examples per
# operation, a few thousand requests, well under a minute.
#
#   scripts/contract.sh
set -euo pipefail
cd "$(dirname "$0")/.."

version=4.32.5
if ! schemathesis --version 2>/dev/null | grep -q "$version"; then
  echo "installing schemathesis $version"
  # A Debian-managed Python refuses plain installs (PEP 668).
  python3 -m pip install -q "schemathesis==$version" 2>/dev/null ||
    python3 -m pip install -q --break-system-packages "schemathesis==$version"
fi

# Small HTTP calls without curl: python3 is here for schemathesis anyway.
http() {  # method url [json body] -> prints the answer's body; fails on an error status
  python3 - "$@" <<'PY'
import json, sys, urllib.request
method, url = sys.argv[1], sys.argv[2]
body = sys.argv[3].encode() if len(sys.argv) > 3 else None
req = urllib.request.Request(url, data=body, method=method)
req.add_header("Authorization", "Bearer contract-admin")
if body is not None:
    req.add_header("Content-Type", "application/json")
print(urllib.request.urlopen(req, timeout=5).read().decode())
PY
}

cargo build -q -p imkit-server --bin imkit-server
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base=http://127.0.0.1:$port
target/debug/imkit-server --db "$work/imkit.db" --files "$work/files" \
  --tcp 127.0.0.1:0 --ws off --http "127.0.0.1:$port" --admin-key contract-admin \
  >"$work/server.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 100); do http GET "$base/health" >/dev/null 2>&1 && break; sleep 0.1; done

# A user to act as: its account and a login token.
http POST "$base/v1/admin/users" '{"user_id": "alice", "name": "Alice"}' >/dev/null
token=$(http POST "$base/v1/admin/users/alice/tokens" |
  python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')

# CI runs one fixed seed, so a failure there repeats; elsewhere each run
# draws its own (schemathesis prints it). IMKIT_CONTRACT_SEED picks one.
seed=()
if [ -n "${IMKIT_CONTRACT_SEED:-}" ]; then
  seed=(--seed "$IMKIT_CONTRACT_SEED")
elif [ "${CI:-}" = true ]; then
  seed=(--seed 20261202)
fi

status=0
for who in admin user; do
  if [ "$who" = admin ]; then credential=contract-admin; else credential=$token; fi
  echo "== schemathesis as $who"
  if ! (cd "$work" && schemathesis run "$base/openapi.json" --checks all --max-examples 20 \
      "${seed[@]}" --no-color -H "Authorization: Bearer $credential" >"$work/$who.txt" 2>&1); then
    cat "$work/$who.txt"
    status=1
  else
    grep -E "generated|^Seed" "$work/$who.txt" || true
  fi
done
exit $status
