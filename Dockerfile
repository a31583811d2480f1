# The image the Kubernetes manifests under deploy/kubernetes run: `stitchboard run --config ...`.
# Dependencies come from requirements.lock (hash-pinned, installed before the code is copied, so a
# code change rebuilds only the last layers). The embedded engine (the `embedded` extra, chDB) is
# left out: the image talks to a ClickHouse server (http(s):// DSN).
# Regenerate the lock after changing dependencies in pyproject.toml: the command is in its header.
FROM python:3.11-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN useradd --no-log-init --create-home --uid 10001 --user-group stitchboard
WORKDIR /app
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY stitchboard ./stitchboard
# flows/ carries only the entry point for `python -m bytewax.run flows/production.py`; the code is in stitchboard/.
COPY flows ./flows
RUN pip install --no-cache-dir --no-deps --no-build-isolation . && pip check
USER 10001:10001
EXPOSE 9464
ENTRYPOINT ["stitchboard"]
CMD ["run", "--config", "/etc/stitchboard/settings.toml"]
