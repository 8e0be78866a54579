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
