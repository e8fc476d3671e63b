#!/usr/bin/env bash
# Incident response on the embedded default, as docs/incident-response.md
# tells it (its outputs come from this script): a KEV finding on the pumps'
# release, an incident, a bad patch halted and revoked while two pumps have
# it staged, the fix published through the incident, a notice to the site
# and its acknowledgement, the fix rolled out, the patching report, the
# incident's timeline, a disclosure case, and an evidence bundle that
# verifies offline. Run with `make demo-incident`.
set -euo pipefail
BIN=${BIN:-$(cd "$(dirname "$0")/../.." && pwd)/bin}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
DEMO=$(mktemp -d /tmp/vigil-incident.XXXXXX)
export VIGIL_TOKEN=demo-token
VDATA="$ROOT/internal/vigilance/testdata"
say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() {
  local line="$ vigil" a
  for a in "$@"; do case "$a" in *" "*|*";"*) line="$line \"$a\"" ;; *) line="$line $a" ;; esac; done
  printf '%s\n' "$line" | sed "s#$DEMO#\$DEMO#g; s#$ROOT#.#g; s# --server [^ ]* --keys-dir [^ ]* --tuf-dir [^ ]*##"
  "$BIN/vigil" "$@" | sed "s#$DEMO#\$DEMO#g"
}
# utc N: the time N seconds from now, RFC 3339 in UTC (perl: GNU and BSD date differ).
utc() { perl -MPOSIX -e 'print strftime("%Y-%m-%dT%H:%M:%SZ", gmtime(time + $ARGV[0]))' -- "$1"; }
cleanup() { [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null || true; }
trap cleanup EXIT

VIGIL_BOOTSTRAP_TOKEN=$VIGIL_TOKEN VIGIL_SECURITY_CONTACT=mailto:psirt@maker.example \
VIGIL_SECURITY_EXPIRES=$(utc 15552000) VIGIL_NOTICE_INTERVAL=1s \
  "$BIN/vigil-server" --listen 127.0.0.1:0 --data-dir "$DEMO/server" \
  --snapshot-key "$ROOT/keys-example/snapshot.key" --timestamp-key "$ROOT/keys-example/timestamp.key" 2> "$DEMO/server.log" &
SERVER_PID=$!
for _ in $(seq 100); do
  S=$(sed -n 's/.*"url":"\([^"]*\)".*/\1/p' "$DEMO/server.log" 2>/dev/null | sed -n 1p) || true
  [ -n "${S:-}" ] && curl -fs "$S/healthz" >/dev/null 2>&1 && break
  sleep 0.1
done
export VIGIL_SERVER=$S
cp -r "$ROOT/keys-example" "$DEMO/keys"
V="--server $S --keys-dir $DEMO/keys --tuf-dir $DEMO/cli-tuf"
"$BIN/vigil" repo init $V >/dev/null
"$BIN/vigil" repo add-product demo-pump $V >/dev/null
for v in 1.0.0 1.1.0 1.1.1; do
  mkdir -p "$DEMO/image-$v"; echo "$v" > "$DEMO/image-$v/VERSION"
  tar -C "$DEMO/image-$v" -czf "$DEMO/pump-$v.tar.gz" VERSION
done
sed 's/demo-pump@1.1.0/demo-pump@1.1.1/g; 0,/"version": "1.1.0"/s//"version": "1.1.1"/' "$VDATA/sbom/demo-pump-1.1.0.cdx.json" > "$DEMO/demo-pump-1.1.1.cdx.json"
"$BIN/vigil" release publish --product demo-pump --version 1.0.0 --file "$DEMO/pump-1.0.0.tar.gz" --hardware rev-b --sbom "$VDATA/sbom/demo-pump-1.0.0.cdx.json" $V >/dev/null
"$BIN/vigil" site put st-mary --time-zone America/Chicago --care-area icu --site-cap 2 >/dev/null
for i in 1 2; do
  D="$DEMO/pump-$i"
  "$BIN/vigil" keys generate "pump-$i" --dir "$D/key" >/dev/null
  "$BIN/vigil" device register --id "PUMP-000$i" --product demo-pump --hardware rev-b --site st-mary --care-area icu \
    --public-key "$D/key/pump-$i.pub" --installed-version 1.0.0 >/dev/null
  mkdir -p "$D/slots/a"; echo "1.0.0" > "$D/slots/a/VERSION"
  cat > "$D/agent.yaml" <<YAML
server: $S
device_id: PUMP-000$i
device_key: $D/key/pump-$i.key
trusted_root: $DEMO/keys/trusted-root.json
data_dir: $D/data
product: demo-pump
hardware: rev-b
install_policy: assigned
slots: {backend: dir, dir: $D/slots}
health_check: {command: "true", timeout: 10s}
interlock: {command: "if [ -f $D/slots/b/VERSION ] && [ -f $DEMO/in-use ]; then echo infusion running; exit 1; fi"}
YAML
  "$BIN/vigil-agent" provision --config "$D/agent.yaml" --version 1.0.0 >/dev/null
done
pumps() { for i in 1 2; do "$BIN/vigil-agent" run --config "$DEMO/pump-$i/agent.yaml" --once 2>/dev/null || true; done; }
status() { for i in 1 2; do echo "--- PUMP-000$i"; "$BIN/vigil-agent" status --config "$DEMO/pump-$i/agent.yaml" | sed -n 1,3p; done; }

say "Detection: the feeds arrive; Heartbleed (KEV) is on 1.0.0, which both pumps run"
run feed import --kev "$VDATA/kev/known_exploited_vulnerabilities.json" --nvd "$VDATA/nvd"
F=$("$BIN/vigil" findings list --release demo-pump@1.0.0 -o json | tr -d '\n ' | sed 's/},{/}\n{/g' | grep '"vulnerability_id":"CVE-2014-0160"' | sed -n 's/.*"id":"\(F-[0-9a-f]*\)".*/\1/p' | head -1)

say "Assessment: open the incident, triage the finding"
INC=$("$BIN/vigil" incident open --title "Heartbleed (KEV) in demo-pump 1.0.0" --severity critical --product demo-pump --finding "$F" -o json | sed -n 's/.*"id": "\(INC-[^"]*\)".*/\1/p')
run incident show "$INC"
run finding triage "$F" --risk uncontrolled --rationale "telemetryd is reachable from the hospital network" --vex-status affected --action "update to 1.1.1" >/dev/null
echo "(triaged $F as uncontrolled: the 30-day notice and 60-day fix clocks run)"

say "A patch, 1.1.0, goes out; both pumps stage it but are in use"
touch "$DEMO/in-use"
"$BIN/vigil" release publish --product demo-pump --version 1.1.0 --file "$DEMO/pump-1.1.0.tar.gz" --hardware rev-b --sbom "$VDATA/sbom/demo-pump-1.1.0.cdx.json" $V >/dev/null
RO=$("$BIN/vigil" rollout create --release demo-pump@1.1.0 --select "product=demo-pump,hardware=rev-b,version<1.1.0" --waves "all:100%" --soak 0s --success 60% --halt-on "failure>=50% min=3" -o json | sed -n 's/.*"id": "\([^"]*\)".*/\1/p')
"$BIN/vigil" approve "$RO" --wave all --site st-mary --comment "CHG-2026-1142" >/dev/null
pumps; pumps
status

say "Containment: 1.1.0 boot-loops on rev-b — halt it, then revoke it"
run incident halt "$INC" --release demo-pump@1.1.0 --note "boot loop reported by st-mary biomed" --yes
run release revoke demo-pump@1.1.0 --reason "boot loop on rev-b" --incident "$INC" --yes $V
rm "$DEMO/in-use"; pumps
status

say "Remediation: the fix, 1.1.1, published through the incident"
run release publish --product demo-pump --version 1.1.1 --file "$DEMO/pump-1.1.1.tar.gz" --hardware rev-b --sbom "$DEMO/demo-pump-1.1.1.cdx.json" \
  --incident "$INC" --reason "fix: OpenSSL 1.1.1w; boot loop fixed" $V

say "Notice: tell the site; its IT acknowledges"
printf 'Heartbleed (CVE-2014-0160) affects demo-pump 1.0.0.\nInstall 1.1.1 (approve the rollout in the console); until then keep pumps off guest networks.\n' > "$DEMO/notice.txt"
N=$("$BIN/vigil" notice create --incident "$INC" --sites all --severity critical --title "Update demo-pump to 1.1.1" --text "$DEMO/notice.txt" --yes -o json | sed -n 's/.*"id": "\(N-[^"]*\)".*/\1/p' | head -1)
"$BIN/vigil" notice create --finding "$F" --sites all --severity critical --title "Heartbleed in demo-pump 1.0.0" --text "$DEMO/notice.txt" --yes >/dev/null
IT=$("$BIN/vigil" token create --name "st-mary IT" --role site-it --sites st-mary -o json | sed -n 's/.*"token": "\([^"]*\)".*/\1/p')
VIGIL_TOKEN=$IT run notice list --unacked
VIGIL_TOKEN=$IT run notice ack "$N" --comment "pumps moved off the guest network; rollout approved"

say "The fix rolls out"
RO2=$("$BIN/vigil" rollout create --release demo-pump@1.1.1 --select "product=demo-pump,hardware=rev-b,version<1.1.1" --waves "all:100%" --soak 0s --success 60% --halt-on "failure>=50% min=3" -o json | sed -n 's/.*"id": "\([^"]*\)".*/\1/p')
"$BIN/vigil" approve "$RO2" --wave all --site st-mary --comment "CHG-2026-1150" >/dev/null
pumps; pumps
status
# Installed versions reach the registry with the next batch of check-ins.
for _ in $(seq 60); do "$BIN/vigil" report patching -o json | grep -q '"share_clean": 1' && break; sleep 0.5; done
run report patching --product demo-pump

say "The incident's timeline (from the audit chain)"
run incident timeline "$INC"

say "Coordinated disclosure: a researcher reports through the public intake"
curl -s "$S/.well-known/security.txt"
R=$(curl -s -X POST "$S/api/v1/cvd/reports" -H 'Content-Type: application/json' \
  -d '{"title":"Telemetry port accepts unauthenticated commands","description":"nc pump 7000, then STATUS","product":"demo-pump","version":"1.1.1","contact":"researcher@example.org"}')
echo "$R"
CASE=$(echo "$R" | sed -n 's/.*"id":"\([^"]*\)".*/\1/p')
run cvd ack "$CASE" --note "thank you, triage within 5 days"
run cvd triage "$CASE" --note "reproduced on rev-b"
run cvd confirm "$CASE" --note "unauthenticated command channel"
run cvd link "$CASE" --release demo-pump@1.1.1
run cvd list

say "Evidence for the auditor"
SINCE=$(utc -3600); UNTIL=$(utc 3600)
run evidence export --since "$SINCE" --until "$UNTIL" --out "$DEMO/evidence.zip"
run evidence verify "$DEMO/evidence.zip"
echo "Everything is in $DEMO (server log: $DEMO/server.log)."
