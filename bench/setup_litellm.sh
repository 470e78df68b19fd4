#!/usr/bin/env bash
# Create (idempotently) the isolated LiteLLM venv used as the comparison row in bench/run.py.
# LiteLLM gets its OWN venv so its dependency tree never touches the repo .venv.
#
# Usage: bench/setup_litellm.sh            # create/refresh bench/.venv-litellm
#        LITELLM_SPEC='litellm[proxy]==1.x.y' bench/setup_litellm.sh   # pin a version
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$HERE/.venv-litellm"
PY="${PYTHON:-python3}"
SPEC="${LITELLM_SPEC:-litellm[proxy]}"
# Keep the import check offline (LiteLLM otherwise fetches its model cost map at import time).
export LITELLM_LOCAL_MODEL_COST_MAP=True LITELLM_TELEMETRY=False

if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating $VENV"
    "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi

# Already installed (and importable with its proxy extras)? Then nothing to do.
if "$VENV/bin/python" -c "import litellm.proxy.proxy_server" >/dev/null 2>&1 \
   && [[ -x "$VENV/bin/litellm" ]] && [[ -z "${LITELLM_FORCE:-}" ]]; then
    echo "litellm already installed in $VENV: $("$VENV/bin/pip" show litellm 2>/dev/null | awk '/^Version/{print $2}')"
    exit 0
fi

echo "installing $SPEC into $VENV"
# uvloop/httptools let uvicorn (which LiteLLM's proxy runs on) use its fast loop/parser, the same
# as every other row in the bench.
"$VENV/bin/python" -m pip install -q "$SPEC" uvloop httptools
"$VENV/bin/python" -c "import litellm.proxy.proxy_server" >/dev/null
echo "ok: litellm $("$VENV/bin/pip" show litellm | awk '/^Version/{print $2}') in $VENV"
