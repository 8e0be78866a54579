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

# --- giftless: a real Git LFS HTTP server for tests/git/lfs (own virtualenv) ----
# giftless 0.6.2's wheel declares no dependencies; this is the set it runs with,
# found by trial: with marshmallow 4, "cannot import name 'pprint' from 'marshmallow'";
# giftless puts `sub: null` in its pre-authorised action JWTs, which PyJWT 2.10
# rejects (uploads fail with "401 User identity is required"): hence <4 and <2.10.
GIFTLESS_VENV=.cache/giftless-venv
GIFTLESS_PINS=(
    "giftless==0.6.2" "figcan==0.0.4" "Flask==2.3.3" "Flask-Classful==0.16.0"
    "flask-marshmallow==0.15.0" "marshmallow==3.26.2" "webargs==8.7.1" "Werkzeug==3.1.9"
    "PyYAML" "python-dotenv" "python-dateutil" "cachetools" "PyJWT==2.9.0" "waitress==3.0.2"
    "typing-extensions"
)
GIFTLESS_STAMP="$GIFTLESS_VENV/.installed-$(printf '%s\n' "${GIFTLESS_PINS[@]}" | sha256sum | cut -c1-12)"
if [ ! -e "$GIFTLESS_STAMP" ]; then
    rm -rf "$GIFTLESS_VENV"
    python3 -m venv "$GIFTLESS_VENV"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$GIFTLESS_VENV/bin/pip" install --quiet "${GIFTLESS_PINS[@]}"
    touch "$GIFTLESS_STAMP"
fi

# --- pre-commit framework tests (tests/git/hooks): an offline wheelhouse ----------
# pre-commit builds ml-integrity into its own virtualenv (language: python).
# The tests run that pip with PIP_NO_INDEX=1 against this folder: the runtime
# dependencies of pyproject.toml, and hatchling to build the project.
HOOK_WHEELS=.cache/hooks-wheels
if [ ! -f "$HOOK_WHEELS/.complete" ] || [ pyproject.toml -nt "$HOOK_WHEELS/.complete" ]; then
    py=.venv/bin/python
    [ -x "$py" ] || py=python3
    mkdir -p "$HOOK_WHEELS"
    if ! "$py" -m pip download --quiet --disable-pip-version-check --only-binary :all: \
        -d "$HOOK_WHEELS" hatchling . >"$HOOK_WHEELS/download.log" 2>&1; then
        grep -v '^WARNING: Location' "$HOOK_WHEELS/download.log" >&2
        exit 3
    fi
    touch "$HOOK_WHEELS/.complete"
fi

# --- PyTorch for the torch adapter tests (tests/data/test_torch.py) ------------------
# torch==2.13.0 (a CPU build where a local wheel of it is on pip's find-links, as on
# the project's machines). Optional: when it cannot be installed the tests skip,
# naming .cache/torch-install.log. ML_INTEGRITY_NO_TORCH=1 skips the install.
TORCH_VERSION=2.13.0
py=.venv/bin/python
if [ -x "$py" ] && [ "${ML_INTEGRITY_NO_TORCH:-0}" != 1 ] && ! "$py" - "$TORCH_VERSION" <<'PY'
import importlib.metadata as m, sys
try:
    ok = m.version("torch").split("+")[0] == sys.argv[1]
except m.PackageNotFoundError:
    ok = False
sys.exit(0 if ok else 1)
PY
then
    mkdir -p .cache
    echo "tests/tools/install.sh: installing torch==$TORCH_VERSION into .venv (for tests/data/test_torch.py)" >&2
    if ! timeout 900 "$py" -m pip install --quiet --disable-pip-version-check --only-binary :all: \
        "torch==$TORCH_VERSION" >.cache/torch-install.log 2>&1; then
        echo "tests/tools/install.sh: torch==$TORCH_VERSION could not be installed" \
            "(tests/data/test_torch.py will skip; see .cache/torch-install.log)" >&2
    fi
fi
