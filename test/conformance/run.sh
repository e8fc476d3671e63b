#!/usr/bin/env bash
# Run the public TUF client conformance suite (theupdateframework/tuf-conformance)
# against `vigil-agent tuf-client`. See docs/trust-model.md ("Conformance").
#
# Usage: test/conformance/run.sh [VIGIL_AGENT_BINARY] [pytest args, e.g. -k NAME]
#
# Needs (PyPI is not required; sources work):
#   TUF_CONFORMANCE  checkout of github.com/theupdateframework/tuf-conformance
#   PYTHON_TUF       checkout of github.com/theupdateframework/python-tuf
#   SECURESYSTEMSLIB checkout of github.com/secure-systems-lab/securesystemslib
#   a python3 with `cryptography`, pytest (Debian: python3-pytest) and faketime.
# Exit code: pytest's (0 when every case passed).
set -euo pipefail
BIN=$(readlink -f "${1:-bin/vigil-agent}")
shift || true
: "${TUF_CONFORMANCE:?set TUF_CONFORMANCE to a tuf-conformance checkout}"
: "${PYTHON_TUF:?set PYTHON_TUF to a python-tuf checkout}"
: "${SECURESYSTEMSLIB:?set SECURESYSTEMSLIB to a securesystemslib checkout}"
PYTHON=${PYTHON:-python3}
command -v faketime >/dev/null || { echo "faketime is missing (Debian: apt-get install faketime)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The suite runs its client as one command; no .xfails file next to it, so
# nothing is excused.
printf '#!/bin/sh\nexec "%s" tuf-client "$@"\n' "$BIN" > "$work/vigil-tuf-client"
chmod +x "$work/vigil-tuf-client"
# pytest from Debian's dist-packages without shadowing the interpreter's own
# cryptography: link only pytest and what it imports.
mkdir -p "$work/pydeps"
if ! "$PYTHON" -c 'import pytest' 2>/dev/null; then
	for p in /usr/lib/python3/dist-packages/{_pytest,pytest,py,pluggy,iniconfig,packaging}; do
		[ -e "$p" ] && ln -s "$p" "$work/pydeps/"
	done
	for p in /usr/lib/python3/dist-packages/{pytest,pluggy,iniconfig}-*; do
		[ -e "$p" ] && ln -s "$p" "$work/pydeps/"
	done
fi
export PYTHONPATH="$work/pydeps:$TUF_CONFORMANCE:$PYTHON_TUF:$SECURESYSTEMSLIB"
cd "$TUF_CONFORMANCE"
"$PYTHON" -m pytest -p no:cacheprovider -rfE tuf_conformance --entrypoint "$work/vigil-tuf-client" "$@"
