#!/usr/bin/env bash
# Set-up step of action.yml: a private virtual environment for the Action.
#
# Creates a venv under $RUNNER_TEMP (the job's Python is left alone), installs
# the hash-pinned dependencies of install/requirements.txt (--require-hashes:
# any file whose hash differs is refused), then ml-integrity itself from the
# Action's own checkout ($GITHUB_ACTION_PATH) with --no-deps. Writes the
# interpreter to use as the step output 'python'.
#
# GHA_ML_INTEGRITY_INTERNAL_BE_CAREFUL_PYTHON (input internal-be-careful-python) skips all
# of that and uses an interpreter that already has the dependencies, with the
# Action's source on PYTHONPATH: for offline tests of action.yml (act).
set -euo pipefail

action="${GITHUB_ACTION_PATH:?GITHUB_ACTION_PATH is not set}"
action="${action%/}"
out="${GITHUB_OUTPUT:?GITHUB_OUTPUT is not set}"

if [ -n "${GHA_ML_INTEGRITY_INTERNAL_BE_CAREFUL_PYTHON:-}" ]; then
    py="$GHA_ML_INTEGRITY_INTERNAL_BE_CAREFUL_PYTHON"
    if ! PYTHONPATH="$action/src" "$py" -c 'import ml_integrity.action.main, cryptography, requests, yaml' 2>/dev/null; then
        echo "::error title=ml-integrity: set-up::internal-be-careful-python does not name a Python with ml-integrity's dependencies"
        exit 2
    fi
    {
        echo "python=$py"
        echo "pythonpath=$action/src"
    } >>"$out"
    exit 0
fi

base=""
for candidate in python3 python; do
    if command -v "$candidate" >/dev/null 2>&1 &&
        "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        base="$candidate"
        break
    fi
done
if [ -z "$base" ]; then
    echo "::error title=ml-integrity: set-up::ml-integrity needs Python 3.10 or newer on the runner; add actions/setup-python before this step"
    exit 3
fi

venv="${RUNNER_TEMP:?RUNNER_TEMP is not set}/ml-integrity-venv"
"$base" -m venv "$venv"
if [ -x "$venv/bin/python" ]; then
    py="$venv/bin/python"
else
    py="$venv/Scripts/python.exe" # Windows runners
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
"$py" -m pip install --quiet --require-hashes --only-binary :all: --no-deps \
    -r "$action/install/requirements.txt"
"$py" -m pip install --quiet --no-deps --no-build-isolation --no-index "$action"
"$py" -c 'import ml_integrity.action.main'
{
    echo "python=$py"
    echo "pythonpath="
} >>"$out"
