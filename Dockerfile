# syntax=docker/dockerfile:1
# wombat-collect in a container: the CLI, plus supercronic running
# crontab/supercronic (the image's command).
#
#   docker build -t wombat-collect .
#   docker run -d --name wombat-collect -e DATABASE_URL=... \
#       -v wombat-collect-state:/var/lib/wombat-collect wombat-collect
#   docker run --rm -e DATABASE_URL=... -v wombat-collect-state:/var/lib/wombat-collect \
#       wombat-collect wombat-collect prices --exchange kis --days-back 30
#
# CI lints this file (hadolint) and runs its crontab and HEALTHCHECK command
# lines for real, but never builds the image: CI has no Docker daemon.

# --- the package, in a virtual environment ------------------------------------
FROM python:3.11-slim-bookworm AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml setup.cfg README.md ./
COPY wombat_collect ./wombat_collect
# The sentry extra: the backend's stack sets SENTRY_DSN.
RUN python -m venv /opt/wombat-collect \
    && /opt/wombat-collect/bin/pip install --no-cache-dir '.[sentry]'

# --- supercronic, pinned and checked by SHA1 -------------------------------------
FROM python:3.11-slim-bookworm AS supercronic
ARG TARGETARCH
ARG SUPERCRONIC_VERSION=v0.2.51
# The SHA1 its release page prints for supercronic-linux-amd64. No arm64 SHA1 is
# pinned (none could be checked offline), so other architectures stop here.
ARG SUPERCRONIC_SHA1_AMD64=1692066e350a88ff4d7d6474fe3c7a6c41ec5e89
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ADD https://github.com/aptible/supercronic/releases/download/${SUPERCRONIC_VERSION}/supercronic-linux-amd64 /supercronic
RUN if [ "${TARGETARCH:-amd64}" != amd64 ]; then \
        echo "supercronic: only linux/amd64 has a pinned SHA1, not ${TARGETARCH}" >&2; exit 1; \
    fi \
    && echo "${SUPERCRONIC_SHA1_AMD64}  /supercronic" | sha1sum -c - \
    && chmod 0755 /supercronic

# --- the image ---------------------------------------------------------------------
FROM python:3.11-slim-bookworm
ARG WOMBAT_UID=10001
LABEL org.opencontainers.image.title="wombat-collect" \
      org.opencontainers.image.description="Daily Upbit and KIS market data for the wombat backend"

# State (KIS token cache) and locks live in one volume at /var/lib/wombat-collect,
# owned by the numeric user, mode 0700: an empty named volume copies this.
RUN groupadd --system --gid "${WOMBAT_UID}" wombat \
    && useradd --system --no-log-init --uid "${WOMBAT_UID}" --gid "${WOMBAT_UID}" \
        --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin wombat \
    && install -d -m 0700 -o "${WOMBAT_UID}" -g "${WOMBAT_UID}" /var/lib/wombat-collect

COPY --from=build /opt/wombat-collect /opt/wombat-collect
COPY --from=supercronic /supercronic /usr/local/bin/supercronic
COPY crontab/supercronic /etc/wombat-collect/crontab
RUN supercronic -test /etc/wombat-collect/crontab

ENV PATH=/opt/wombat-collect/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TZ=Asia/Seoul \
    WOMBAT_STATE_DIR=/var/lib/wombat-collect \
    WOMBAT_LOCK_DIR=/var/lib/wombat-collect
# No .env in the working directory: configuration comes from the environment.
WORKDIR /opt/wombat-collect
USER ${WOMBAT_UID}:${WOMBAT_UID}

# Healthy while the data is fresh: `status` reads a few rows of collect_run,
# exit 0 OK, 1 WARNING, 2 CRITICAL (Docker reserves 2, hence `|| exit 1`).
# Every 15 minutes is plenty for data that changes three times a day.
HEALTHCHECK --interval=15m --timeout=60s --start-period=2m --retries=2 \
    CMD ["/bin/sh", "-c", "wombat-collect status --exchange all || exit 1"]

# supercronic waits for a running job on SIGTERM: see stop_grace_period in compose.yaml.
CMD ["supercronic", "-passthrough-logs", "/etc/wombat-collect/crontab"]
