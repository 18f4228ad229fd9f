#!/usr/bin/env bash
# ComfyUI's own virtual environment for the node-pack tests (tests/comfy/), beside the project's .venv.
#
# ComfyUI imports torchvision while it loads (comfy/sd.py -> comfy/ldm/cascade/stage_c_coder.py), and no
# torchvision runs beside the project's CPU torch 2.13.0: the matching torchvision 0.28.0 fails on import
# ("operator torchvision::nms does not exist"), and an unpinned `pip install torchvision` (as ComfyUI's
# requirements.txt asks) replaces torch 2.13.0+cpu with torch 2.14.1+cu130 — both measured here. So this
# environment takes the pair this machine serves for ComfyUI (docs/comfyui_notes.md, "Environment"): torch
# 2.14.1 with torchvision 0.29.1 (a CUDA build; ComfyUI runs it on the CPU with --cpu), pinned below, then
# ComfyUI's requirements under a constraint that keeps exactly that torch.
#
# Then latentbridge is installed into it the way a ComfyUI user would (`pip install <repo>`, editable here
# so the tests see the working tree), and torch's version and build are recorded before and after: the
# install must not change them (latentbridge's dependencies do not pin torch). A changed torch fails the
# script. Idempotent: a second run re-installs only when this script, pyproject.toml or ComfyUI's
# requirements.txt changed.
#
#   scripts/comfy_env.sh            set up (or reuse) .venv-comfy
#   scripts/comfy_env.sh --check    exit 0 when .venv-comfy is set up and current, 1 otherwise (installs nothing)
#
# Environment: LATENTBRIDGE_COMFYUI (the ComfyUI source tree, default ../shared/comfyui),
# LATENTBRIDGE_COMFY_VENV (default .venv-comfy).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

COMFY="${LATENTBRIDGE_COMFYUI:-../shared/comfyui}"
VENV="${LATENTBRIDGE_COMFY_VENV:-.venv-comfy}"
# The torch build ComfyUI gets here; torchaudio is the release built for it (ComfyUI's requirements ask for it).
TORCH_PINS=("torch==2.14.1" "torchvision==0.29.1" "torchaudio==2.11.1")
# Not in ComfyUI's requirements.txt but imported by it (app/frontend_management.py), and the test runner.
EXTRA=("requests" "comfy-kitchen>=0.2.3" "pytest>=8")

if [ ! -f "$COMFY/requirements.txt" ]; then
    echo "comfy_env.sh: no ComfyUI source tree at $COMFY (requirements.txt missing); set LATENTBRIDGE_COMFYUI" >&2
    exit 2
fi

pip_q() { "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$@"; }

torch_build() {
    # version, CUDA build and the sha256 of torch's RECORD (changes on any reinstall) — one JSON line
    "$VENV/bin/python" - <<'PY'
import hashlib, importlib.metadata as md, json
out = {}
for name in ("torch", "torchvision", "torchaudio"):
    try:
        dist = md.distribution(name)
    except md.PackageNotFoundError:
        out[name] = None
        continue
    record = dist.read_text("RECORD") or ""
    out[name] = {"version": dist.version, "record_sha256": hashlib.sha256(record.encode()).hexdigest()}
import torch
out["torch"]["cuda"] = torch.version.cuda
out["torch"]["git"] = torch.version.git_version
print(json.dumps(out, sort_keys=True))
PY
}

stamp="$VENV/.latentbridge-comfy-installed"
want=$(cat "$0" pyproject.toml "$COMFY/requirements.txt" | sha256sum | cut -c1-16)
if [ "${1:-}" = "--check" ]; then
    [ -x "$VENV/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]
    exit $?
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
    echo "comfy_env.sh: $VENV is current" >&2
    exit 0
fi

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    py=""
    for cand in python3.11 python3; do
        if command -v "$cand" >/dev/null 2>&1 &&
            "$cand" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null; then
            py="$cand"
            break
        fi
    done
    if [ -z "$py" ]; then
        echo "comfy_env.sh: no Python 3.11 found (the torch builds this machine serves are for 3.11)" >&2
        exit 2
    fi
    echo "comfy_env.sh: creating $VENV with $py" >&2
    "$py" -m venv "$VENV"
fi

constraints="$VENV/torch-constraints.txt"
printf '%s\n' "${TORCH_PINS[@]}" >"$constraints"
echo "comfy_env.sh: installing ${TORCH_PINS[*]}, then ComfyUI's requirements" >&2
pip_q "${TORCH_PINS[@]}"
pip_q -r "$COMFY/requirements.txt" "${EXTRA[@]}" -c "$constraints"
t_comfy=$(date +%s)

before=$(torch_build)
echo "$before" >"$VENV/torch-before.json"
"$VENV/bin/python" -m pip freeze --disable-pip-version-check --exclude-editable >"$VENV/freeze-before.txt"
echo "comfy_env.sh: installing latentbridge into $VENV (torch must not change)" >&2
pip_q -e .
after=$(torch_build)
echo "$after" >"$VENV/torch-after.json"
"$VENV/bin/python" -m pip freeze --disable-pip-version-check --exclude-editable >"$VENV/freeze-after.txt"
# what latentbridge's dependencies added or changed in ComfyUI's environment (informational)
diff "$VENV/freeze-before.txt" "$VENV/freeze-after.txt" | sed -n 's/^> /  + /p; s/^< /  - /p' >"$VENV/freeze-diff.txt" || true
echo "comfy_env.sh: latentbridge's dependencies changed $(grep -c '^  - ' "$VENV/freeze-diff.txt" || true) and added" \
    "$(($(grep -c '^  + ' "$VENV/freeze-diff.txt" || true) - $(grep -c '^  - ' "$VENV/freeze-diff.txt" || true))) packages" \
    "($VENV/freeze-diff.txt)" >&2
if [ "$before" != "$after" ]; then
    echo "comfy_env.sh: installing latentbridge changed ComfyUI's torch:" >&2
    echo "  before: $before" >&2
    echo "  after:  $after" >&2
    exit 1
fi
end=$(date +%s)
echo "$want" >"$stamp"
echo "comfy_env.sh: done in $((end - start)) s (ComfyUI $((t_comfy - start)) s, latentbridge $((end - t_comfy)) s);" \
    "torch unchanged: $before" >&2
