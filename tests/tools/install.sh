#!/usr/bin/env bash
# Installs what the test suite needs beyond the Python packages:
#   git-lfs (Debian package), and further tools added by later sections.
set -euo pipefail
cd "$(dirname "$0")/../.."

need_apt=()
command -v git >/dev/null || need_apt+=(git)
command -v git-lfs >/dev/null || need_apt+=(git-lfs)
if ((${#need_apt[@]})); then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "tests/tools/install.sh: please install: ${need_apt[*]} (sudo apt-get install ${need_apt[*]})" >&2
        exit 3
    fi
fi

# GitHub Action: the wheels pinned (by hash) in install/requirements.txt, for
# this platform, so that tests/action/test_setup.py runs the Action's set-up
# step (venv + pip install --require-hashes) without network.
wheels=.cache/action-wheels
if [ ! -f "$wheels/.complete" ] || [ install/requirements.txt -nt "$wheels/.complete" ]; then
    py=.venv/bin/python
    [ -x "$py" ] || py=python3
    mkdir -p "$wheels"
    if ! "$py" -m pip download --quiet --disable-pip-version-check --require-hashes \
        --only-binary :all: --no-deps -r install/requirements.txt -d "$wheels" \
        >"$wheels/download.log" 2>&1; then
        grep -v '^WARNING: Location' "$wheels/download.log" >&2
        exit 3
    fi
    touch "$wheels/.complete"
fi

# --- Sigstore test double: Node + @sigstore/mock (tests/tools/sigstore-mock) ----
# A loopback Fulcio + Rekor for the keyless round trip (tests/trust). The
# package and its dependencies are pinned by package-lock.json; 0.13.0 is the
# version that works (0.11.0's SCTs are refused by sigstore-python).
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
    else
        echo "tests/tools/install.sh: please install: nodejs npm (sudo apt-get install nodejs npm)" >&2
        exit 3
    fi
fi
MOCK_DIR=tests/tools/sigstore-mock
MOCK_PKG="$MOCK_DIR/node_modules/@sigstore/mock/package.json"
if [ ! -e "$MOCK_PKG" ] || ! grep -q '"version": "0.13.0"' "$MOCK_PKG" \
    || [ "$MOCK_DIR/package-lock.json" -nt "$MOCK_DIR/node_modules/.package-lock.json" ]; then
    (cd "$MOCK_DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
