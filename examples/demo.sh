#!/usr/bin/env bash
# The ml-integrity demo: a Git repository with an LFS-tracked model is signed,
# cloned and verified; then the model is tampered with and the change is refused.
# Run with `make demo` (it creates the virtualenv and puts ml-integrity on PATH).
# Everything happens in a temporary folder with its own git configuration.
set -euo pipefail

if ! command -v git-lfs >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing git-lfs (Debian package) ..."
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git-lfs >/dev/null
    else
        echo "make demo needs git-lfs: sudo apt-get install git-lfs (or see https://git-lfs.com)" >&2
        exit 3
    fi
fi

work="$(mktemp -d "${TMPDIR:-/tmp}/ml-integrity-demo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
export HOME="$work/home" GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL="$work/home/.gitconfig"
mkdir -p "$HOME"
git config --global user.name "Demo Publisher"
git config --global user.email publisher@example.com
git config --global init.defaultBranch main
git lfs install --skip-repo >/dev/null

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

step "The publisher: a repository with an LFS-tracked model (synthetic weights + config)"
git init -q --bare remote.git
git init -q publisher && cd publisher
git remote add origin ../remote.git
run git lfs track "*.safetensors"
mkdir -p model
python3 - <<'PY'
import json, random, struct
r = random.Random(7)
tensors = {"embed.weight": (256, 1024), "head.weight": (1024, 8)}
header, offset, blobs = {}, 0, []
for name, shape in tensors.items():
    n = shape[0] * shape[1] * 4
    header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
    blobs.append(r.randbytes(n))
    offset += n
h = json.dumps(header).encode()
with open("model/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
json.dump({"architectures": ["DemoModel"], "hidden_size": 1024}, open("model/config.json", "w"))
PY
run ml-integrity init
run ml-integrity keygen --out ../signer.pem
# the publisher's own checks (pre-push, checkout) trust the publisher's public key
run git config ml-integrity.publicKey "$work/signer.pem.pub"
run git add .gitattributes .ml-integrity model
run ml-integrity scan --pickle block model
run ml-integrity sign-repo --key ../signer.pem
run git commit -q -m "DemoModel v1, signed"
run git push -q origin main
cd ..

step "The consumer trusts the publisher's public key (from outside the repository) and clones"
run ml-integrity clone remote.git consumer --key "$work/signer.pem.pub"
cd consumer
run ml-integrity verify --git-repo
echo "exit code: 0"
cd ..

step "An attacker pushes a modified model without a valid signature"
cd publisher
python3 -c "
p='model/model.safetensors'; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=1; open(p,'wb').write(b)"
run git add model/model.safetensors
run git commit -q -m "DemoModel v1 (quietly changed)"
# our pre-push hook would refuse this unsigned change: an attacker skips the hooks
# (and uploads the LFS object by hand, which git-lfs's own pre-push hook would do)
run git lfs push origin main
run git push -q --no-verify origin main
cd ..

step "The consumer pulls: the change is refused, the file stays an LFS pointer"
cd consumer
set +e
run git pull -q
run ml-integrity verify --git-repo
rc=$?
set -e
echo "exit code: $rc"
head -c 200 model/model.safetensors; echo
if [ "$rc" -ne 1 ]; then
    echo "demo FAILED: the tampered model was not refused with exit code 1" >&2
    exit 1
fi
if ! grep -q "^version https://git-lfs" model/model.safetensors; then
    echo "demo FAILED: the refused content reached the work tree" >&2
    exit 1
fi
cd ..

step "The publisher reviews and signs the change; the consumer recovers with one command"
cd publisher
run ml-integrity sign-repo --key ../signer.pem
run git commit -q -m "DemoModel v1.1, signed"
run git push -q origin main
cd ../consumer
run git pull -q
run ml-integrity pull
run ml-integrity verify --git-repo

printf '\n\033[1mDemo complete:\033[0m signed model verified on clone; unsigned change refused '
printf '(pointer kept, nothing lost); recovered after signing.\n'
