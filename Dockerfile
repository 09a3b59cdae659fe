# syntax=docker/dockerfile:1
# loralab: one image for every process, chosen by command (deploy/docker/entrypoint.sh):
#   api | worker [--queues cpu] | serve | ui | migrate | mlflow ARGS... | any command
# CPU build (default):  docker build -t loralab:dev .
# CUDA build (workers that see the GPU; run with --gpus all or the NVIDIA device plugin):
#   docker build --build-arg TORCH_VARIANT=cu128 -t loralab-cuda:dev .
# The install commands are the ones `make setup` runs (torch pinned first through
# constraints.txt, then the package), without the dev tools and not editable.

FROM python:3.11.13-slim-bookworm AS build
# cpu, or a CUDA build of the PyTorch wheel index (cu126, cu128, ...): the wheels bring the
# CUDA runtime; the host's NVIDIA driver is all a GPU node adds.
ARG TORCH_VARIANT=cpu
# extra packages for the image, for example boto3 for an S3 artifact store behind MLflow
ARG EXTRA_PIP=""
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
WORKDIR /src
RUN python -m venv /opt/venv
COPY constraints.txt pyproject.toml README.md ./
COPY src ./src
RUN pip install -q -c constraints.txt --index-url "https://download.pytorch.org/whl/${TORCH_VARIANT}" \
        --extra-index-url https://pypi.org/simple torch==2.13.0 \
    && pip install -q -c constraints.txt . ${EXTRA_PIP}

FROM python:3.11.13-slim-bookworm AS runtime
LABEL org.opencontainers.image.title="loralab" \
      org.opencontainers.image.description="Fine-tune text classifiers with LoRA: API, workers, prediction service, UI" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/data/cache/huggingface \
    MPLCONFIGDIR=/tmp/matplotlib \
    XDG_CACHE_HOME=/tmp/cache \
    LORALAB_STORAGE__RESULTS_DIR=/data/results \
    LORALAB_API__HOST=0.0.0.0 \
    LORALAB_SERVING__HOST=0.0.0.0 \
    LORALAB_OBSERVABILITY__WORKER_METRICS_HOST=0.0.0.0 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# not a secret: the word TOKEN in a tokenizer setting is what the rule matches
# hadolint ignore=DL3064
ENV TOKENIZERS_PARALLELISM=false
RUN groupadd --gid 10001 loralab \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /data --shell /usr/sbin/nologin loralab \
    && mkdir -p /data/results /data/cache \
    && chown -R 10001:10001 /data
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 deploy/docker/entrypoint.sh /usr/local/bin/loralab-entrypoint
COPY --chmod=0644 deploy/docker/healthcheck.py /usr/local/lib/loralab-healthcheck.py
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080 8000 8501 9101 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/usr/local/lib/loralab-healthcheck.py"]
ENTRYPOINT ["loralab-entrypoint"]
CMD ["api"]
