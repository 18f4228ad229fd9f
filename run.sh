#!/usr/bin/env bash
# latentbridge set-up and entry point. Creates or reuses .venv, installs torch==2.13.0 first (pinned:
# any looser spec pulls a multi-GB CUDA build), then the package with its extras; a second run skips
# the install unless pyproject.toml or this script changed.
#   ./run.sh demo [ARGS]   run the offline demo (latentbridge demo)
#   ./run.sh test          run ruff, mypy and the whole test suite (then tests/comfy in ComfyUI's own venv)
#   ./run.sh cli ARGS      run any latentbridge command inside the environment
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

VENV="${LATENTBRIDGE_VENV:-.venv}"
TORCH_SPEC="torch==2.13.0"

pick_python() {
    for py in python3.11 python3.12 python3.10 python3; do
        if command -v "$py" >/dev/null 2>&1 &&
            "$py" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
            echo "$py"
            return 0
        fi
    done
    echo "run.sh: no Python >= 3.10 found; install python3.11 and run again" >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    py=$(pick_python)
    echo "run.sh: creating virtual environment $VENV with $py" >&2
    "$py" -m venv "$VENV"
fi

stamp="$VENV/.latentbridge-installed"
want=$(cat pyproject.toml run.sh | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    echo "run.sh: installing $TORCH_SPEC, then latentbridge[dev,web,hub] (editable)" >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[dev,web,hub]" "$TORCH_SPEC"
    echo "$want" >"$stamp"
fi

cmd="${1:-demo}"
[ $# -gt 0 ] && shift
case "$cmd" in
demo)
    exec "$VENV/bin/latentbridge" demo "$@"
    ;;
test)
    "$VENV/bin/ruff" check .
    "$VENV/bin/ruff" format --check .
    "$VENV/bin/mypy"
    "$VENV/bin/python" -m pytest -q "$@"
    # The node-pack tests run a real ComfyUI inside its own environment (scripts/comfy_env.sh); only on a full run.
    if [ $# -eq 0 ]; then
        if [ -f "${LATENTBRIDGE_COMFYUI:-../shared/comfyui}/requirements.txt" ]; then
            scripts/comfy_env.sh
            exec "${LATENTBRIDGE_COMFY_VENV:-.venv-comfy}/bin/python" -m pytest -q tests/comfy
        fi
        echo "run.sh: no ComfyUI at ${LATENTBRIDGE_COMFYUI:-../shared/comfyui}: tests/comfy skipped" >&2
    fi
    ;;
cli)
    exec "$VENV/bin/latentbridge" "$@"
    ;;
*)
    echo "run.sh: unknown command '$cmd': expected demo, test or cli" >&2
    exit 2
    ;;
esac
