# syntax=docker/dockerfile:1
# A Rendezvous node: `docker build -t rendezvous .`, then see docker-compose.yml and
# docs/operations.md. Two stages: the build stage installs the project and its wheels into a
# virtualenv; the runtime stage copies only that virtualenv onto the same slim base and runs
# as an unprivileged user. uvloop is a dependency and `rendezvous serve` runs on it.

FROM python:3.11.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/rendezvous
WORKDIR /src
COPY pyproject.toml README.md ./
COPY protocol ./protocol
COPY runtime ./runtime
COPY server ./server
COPY storage ./storage
COPY push ./push
COPY client ./client
COPY loadtest ./loadtest
RUN /opt/rendezvous/bin/pip install --no-cache-dir . \
    && /opt/rendezvous/bin/python -c "import uvloop, server.cli"

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="rendezvous" \
      org.opencontainers.image.description="Real-time chat, presence and match server" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /opt/rendezvous /opt/rendezvous
RUN groupadd --system --gid 10001 rendezvous \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home rendezvous \
    && mkdir -p /data \
    && chown 10001:10001 /data
# Settings are RENDEZVOUS_<KEY> variables (or a TOML file with --config); these make the
# image listen on all interfaces, keep its data in the /data volume and log JSON lines.
ENV PATH=/opt/rendezvous/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    RENDEZVOUS_HOST=0.0.0.0 \
    RENDEZVOUS_DATA_DIR=/data \
    RENDEZVOUS_LOG_FORMAT=json
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 8081
# Liveness on the HTTP API port (RENDEZVOUS_HTTP_PORT when changed).
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('RENDEZVOUS_HTTP_PORT', '8081'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/healthz', timeout=2).status == 200 else 1)"]
# SIGTERM drains: clients are told to reconnect elsewhere within drain_timeout_s (20 s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["rendezvous"]
CMD ["serve"]
