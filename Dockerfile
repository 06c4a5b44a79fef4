# syntax=docker/dockerfile:1
# Typogram Arena: one image for every process (the console scripts of setup.cfg:
# arena-gameserver, arena-lobby, arena-matchmaker, arena-tournaments, arena-persistence,
# arena-migrate, arena-admin, ...); the Kubernetes manifests (deploy/k8s) pick one per container.
#
#   docker build -t typogram-arena:0.1.0 .        (or: podman build / buildah bud)
#
# Stages: `web` fetches the browser's one library (npm ci, package-lock.json), `build` installs
# requirements/lock.txt (every distribution pinned, hashes checked) and then the project itself
# (--no-deps) into /opt/venv, `runtime` copies that venv onto a clean slim image: no compiler,
# no pip cache, no npm, running as an unprivileged user.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG NODE_IMAGE=node:20-bookworm-slim

FROM ${NODE_IMAGE} AS web
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${PYTHON_IMAGE} AS build
# A compiler only here, for any locked distribution that ships no wheel for this platform.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN python -m venv /opt/venv
COPY requirements/lock.txt /tmp/lock.txt
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/lock.txt
WORKDIR /src
COPY setup.cfg pyproject.toml README.md ./
COPY arena arena
COPY gameserver gameserver
COPY matchmaker matchmaker
COPY lobby lobby
COPY persistence persistence
COPY ops ops
COPY simulators simulators
COPY tournaments tournaments
# Not editable, no dependency resolution: the lock above is the whole dependency set.
RUN /opt/venv/bin/pip install --no-deps --no-build-isolation . \
    && /opt/venv/bin/python -c "import gameserver, lobby, matchmaker, persistence, tournaments, ops.topics"
# lobby/static.py serves the msgpack codec from <packages' parent>/node_modules: site-packages here.
COPY --from=web /src/node_modules/@msgpack/msgpack/dist.esm \
    /opt/venv/lib/python3.11/site-packages/node_modules/@msgpack/msgpack/dist.esm

FROM ${PYTHON_IMAGE} AS runtime
RUN groupadd --system --gid 10001 arena \
    && useradd --system --uid 10001 --gid arena --no-create-home --home-dir /nonexistent \
       --shell /usr/sbin/nologin arena
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    ARENA_LOG_JSON=1
# The numeric id, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
WORKDIR /tmp
# The process is chosen by the command; the game node by default.
CMD ["arena-gameserver"]
