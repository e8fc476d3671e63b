#!/usr/bin/env bash
# The whole Vigil story on the embedded default, in a temporary directory:
# a repository is initialised with the demo keys, a release is published,
# a rollout is planned and approved by hospital IT, and three device agents
# install it — two commit, one fails its health check and rolls back by
# itself. Then the morning a CVE lands: the vulnerability feeds are
# imported, and the demo release's findings and the exposure of Heartbleed
# (which pump still runs it, and which release fixes it) end the story.
# Run with `make demo`.
set -euo pipefail
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/bin}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEMO=$(mktemp -d /tmp/vigil-demo.XXXXXX)
export VIGIL_TOKEN=demo-token
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

cleanup() { [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT

say "Starting vigil-server (SQLite + local blobs in $DEMO/server) with the DEMO keys"
VIGIL_BOOTSTRAP_TOKEN=$VIGIL_TOKEN "$BIN/vigil-server" --listen 127.0.0.1:0 --data-dir "$DEMO/server" \
  --snapshot-key "$ROOT/keys-example/snapshot.key" --timestamp-key "$ROOT/keys-example/timestamp.key" \
  2> "$DEMO/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
  S=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$DEMO/server.log" 2>/dev/null | sed -n 1p) || true
  [ -n "${S:-}" ] && curl -fs "$S/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
[ -n "${S:-}" ] || { echo "vigil-server did not start:"; cat "$DEMO/server.log"; exit 1; }
echo "server at $S"
export VIGIL_SERVER=$S

say "Release engineering: initialise the repository and the product demo-pump"
cp -r "$ROOT/keys-example" "$DEMO/keys"
V="--server $S --keys-dir $DEMO/keys --tuf-dir $DEMO/cli-tuf"
"$BIN/vigil" repo init $V
"$BIN/vigil" repo add-product demo-pump $V

VDATA="$ROOT/internal/vigilance/testdata"
say "Release engineering: publish demo-pump 1.0.0 (what the pumps run) and 1.1.0 (a security patch), each with its SBOM"
for v in 1.0.0 1.1.0; do
  mkdir -p "$DEMO/image-$v"
  echo "$v" > "$DEMO/image-$v/VERSION"
  tar -C "$DEMO/image-$v" -czf "$DEMO/pump-$v.tar.gz" VERSION
done
"$BIN/vigil" release publish --product demo-pump --version 1.0.0 --file "$DEMO/pump-1.0.0.tar.gz" \
  --hardware rev-b --sbom "$VDATA/sbom/demo-pump-1.0.0.cdx.json" $V
"$BIN/vigil" release publish --product demo-pump --version 1.1.0 --file "$DEMO/pump-1.1.0.tar.gz" \
  --hardware rev-b --severity security --min-from-version 1.0.0 --sbom "$VDATA/sbom/demo-pump-1.1.0.cdx.json" $V
"$BIN/vigil" sbom diff demo-pump@1.0.0 demo-pump@1.1.0

say "Hospital IT / manufacturing: a site and three infusion pumps"
"$BIN/vigil" site put st-mary --time-zone America/Chicago --care-area icu --site-cap 2
for i in 1 2 3; do
  "$BIN/vigil" keys generate "pump-$i" --dir "$DEMO/pump-$i/key" >/dev/null
  "$BIN/vigil" device register --id "PUMP-000$i" --product demo-pump --hardware rev-b --site st-mary \
    --care-area icu --public-key "$DEMO/pump-$i/key/pump-$i.pub" --installed-version 1.0.0
done

say "Release engineering: plan the rollout"
RO=$("$BIN/vigil" rollout create --release demo-pump@1.1.0 --select "product=demo-pump,hardware=rev-b,version<1.1.0" \
  --waves "all:100%" --soak 0s --success 60% --halt-on "failure>=50% min=3" -o json | sed -n 's/.*"id": "\([^"]*\)".*/\1/p')
echo "rollout $RO"

say "Hospital IT at st-mary approves the wave"
"$BIN/vigil" approve "$RO" --wave all --site st-mary --comment "CHG-2026-1142 approved by biomed"

say "Three pumps check in, install, check their health (pump 3's sensor self-test fails)"
for i in 1 2 3; do
  D="$DEMO/pump-$i"
  mkdir -p "$D/slots/a"
  echo "1.0.0" > "$D/slots/a/VERSION"
  [ "$i" = 3 ] || touch "$D/sensor-ok"          # pump 3's sensor is faulty
  cat > "$D/agent.yaml" <<YAML
server: $S
device_id: PUMP-000$i
device_key: $D/key/pump-$i.key
trusted_root: $DEMO/keys/trusted-root.json
data_dir: $D/data
product: demo-pump
hardware: rev-b
slots: {backend: dir, dir: $D/slots}
health_check: {command: "test -f $D/sensor-ok && grep -q 1.1.0 $D/slots/current/VERSION", timeout: 10s}
YAML
  "$BIN/vigil-agent" provision --config "$D/agent.yaml" --version 1.0.0
done
for round in 1 2; do
  for i in 1 2 3; do "$BIN/vigil-agent" run --config "$DEMO/pump-$i/agent.yaml" --once 2>/dev/null || true; done
done
for i in 1 2 3; do
  echo "--- pump $i"
  "$BIN/vigil-agent" status --config "$DEMO/pump-$i/agent.yaml" | sed -n 1,4p
done

say "Rollout status"
"$BIN/vigil" rollout status "$RO"

say "Security officer: the morning a CVE lands — import the feeds (CISA KEV, NVD)"
"$BIN/vigil" feed import --kev "$VDATA/kev/known_exploited_vulnerabilities.json" --nvd "$VDATA/nvd"

say "The audit log"
"$BIN/vigil" audit verify --server "$S"

say "Findings of the demo release demo-pump@1.0.0"
"$BIN/vigil" findings list --release demo-pump@1.0.0

say "Exposure to Heartbleed (CVE-2014-0160, KEV-listed): the pump that rolled back still runs 1.0.0"
"$BIN/vigil" exposure CVE-2014-0160
say "The web console"
IT_TOKEN=$("$BIN/vigil" token create --name "demo st-mary IT" --role site-it --sites st-mary -o json | sed -n 's/.*"token": "\([^"]*\)".*/\1/p')
REL_TOKEN=$("$BIN/vigil" token create --name "demo release engineer" --role release -o json | sed -n 's/.*"token": "\([^"]*\)".*/\1/p')
echo "console:                 $S/console/"
echo "sign in as st-mary's IT: $IT_TOKEN"
echo "or as a release engineer: $REL_TOKEN"
echo
echo "Everything is in $DEMO (server log: $DEMO/server.log)."
if [ -t 0 ] && [ -z "${DEMO_EXIT:-}" ]; then
  echo "The server keeps serving the console until you press Ctrl-C."
  wait "$SERVER_PID" || true
fi
