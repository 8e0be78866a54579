#!/usr/bin/env bash
# The ml-integrity demo: sign a small model, verify it, tamper with it, see it refused.
# Run with `make demo` (it creates the virtualenv and puts ml-integrity on PATH).
set -euo pipefail

work="$(mktemp -d "${TMPDIR:-/tmp}/ml-integrity-demo.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"
step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "A model folder: synthetic weights + config (about 4 MB)"
mkdir -p model/tokenizer
python3 - <<'PY'
import json, os, random, struct
r = random.Random(7)
tensors = {"embed.weight": (256, 1024), "head.weight": (1024, 8)}
header, offset, blobs = {}, 0, []
for name, shape in tensors.items():
    n = shape[0] * shape[1] * 4
    header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + n]}
    blobs.append(bytes(r.getrandbits(8) for _ in range(n)))
    offset += n
h = json.dumps(header).encode()
with open("model/model.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
json.dump({"architectures": ["DemoModel"], "hidden_size": 1024}, open("model/config.json", "w"))
open("model/tokenizer/vocab.txt", "w").write("\n".join(f"tok{i}" for i in range(1000)))
PY
ls -l model model/tokenizer

step "ml-integrity keygen --out signer.pem"
ml-integrity keygen --out signer.pem

step "ml-integrity manifest model"
ml-integrity manifest model

step "ml-integrity sign model --key signer.pem --bundle model.sig"
ml-integrity sign model --key signer.pem --bundle model.sig

step "ml-integrity verify model --bundle model.sig --key signer.pem.pub   (expect exit 0)"
ml-integrity verify model --bundle model.sig --key signer.pem.pub
echo "exit code: 0"

step "Tamper: flip one byte of model/model.safetensors"
python3 -c "
p='model/model.safetensors'; b=bytearray(open(p,'rb').read()); b[len(b)//2]^=1; open(p,'wb').write(b)"

step "ml-integrity verify model --bundle model.sig --key signer.pem.pub   (expect exit 1)"
set +e
ml-integrity verify model --bundle model.sig --key signer.pem.pub
rc=$?
set -e
echo "exit code: $rc"
if [ "$rc" -ne 1 ]; then
    echo "demo FAILED: the tampered model was not refused with exit code 1" >&2
    exit 1
fi

printf '\n\033[1mDemo complete:\033[0m the signed model verified; one flipped byte was caught and named.\n'
