#!/bin/sh
# ml-integrity-hook: @HOOK@
# Installed by `ml-integrity install`; `ml-integrity uninstall` puts back what was here.
# Runs the hook that was here before (@HOOK@.pre-ml-integrity) or `git lfs @HOOK@`,
# then ml-integrity's own check. Exit codes and stdin are passed through.
if [ ! -x @PYTHON@ ]; then
    echo >&2 "ml-integrity: this repository verifies Git LFS content with ml-integrity, but"
    echo >&2 "  @PYTHON@ is gone. Reinstall it (pip install ml-integrity, then"
    echo >&2 "  \`ml-integrity install\` here), or remove this hook: rm $0"
    exit 2
fi
exec @COMMAND@ hook @HOOK@ "$0" "$@"
