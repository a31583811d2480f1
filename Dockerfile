# The image the Kubernetes manifests under deploy/kubernetes run: `stitchboard run --config ...`.
# flows/ carries only the entry point for `python -m bytewax.run flows/production.py`; the code is in stitchboard/.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 stitchboard
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stitchboard ./stitchboard
COPY flows ./flows
RUN pip install --no-cache-dir .
USER stitchboard
EXPOSE 9464
ENTRYPOINT ["stitchboard"]
CMD ["run", "--config", "/etc/stitchboard/settings.toml"]
