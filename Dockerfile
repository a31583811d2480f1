# The image the Kubernetes manifests under deploy/kubernetes run: `stitchboard run --config ...`.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 stitchboard
WORKDIR /app
COPY pyproject.toml README.md ./
COPY stitchboard ./stitchboard
COPY flows ./flows
COPY sinks ./sinks
RUN pip install --no-cache-dir .
USER stitchboard
EXPOSE 9464
ENTRYPOINT ["stitchboard"]
CMD ["run", "--config", "/etc/stitchboard/settings.toml"]
