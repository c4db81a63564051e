# syntax=docker/dockerfile:1
# Darkroom's image: `docker build -t darkroom .` (README "Deploy").
#
# BASE is any Debian-like image with Python 3.11 and its venv module: the official
# python:3.11-slim by default. CI builds a stand-in with mmdebstrap (tests/deploy/build_image.sh),
# which has Python at /usr/bin/python3 where the official one has /usr/local/bin/python, so every
# step calls `python3` from PATH and the runtime lives in a venv (/opt/darkroom) made by that
# same interpreter.
ARG BASE=python:3.11-slim

# ---- build: install Darkroom and its runtimes into /opt/darkroom -------------------------------
FROM ${BASE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
COPY . /src
# A directory wheelhouse/ in the build context (made beforehand with `pip wheel`) is used instead
# of the package index: for machines whose builds cannot reach PyPI (CI here). It never reaches
# the final image, nor do pip, setuptools or any compiler. The libraries' own test suites go too;
# the bytecode pip compiled stays (the root filesystem is read-only: Python cannot cache it later).
RUN set -eu; \
    if [ -d /src/wheelhouse ]; then export PIP_NO_INDEX=1 PIP_FIND_LINKS=/src/wheelhouse; fi; \
    python3 -m venv /opt/darkroom; \
    /opt/darkroom/bin/python -m pip install -q '/src[scale]'; \
    /opt/darkroom/bin/python -m pip uninstall -q -y pip setuptools; \
    find /opt/darkroom -depth -type d \( -name tests -o -name test \) -path '*/site-packages/*' -exec rm -rf {} +; \
    cp /src/deploy/healthcheck.py /opt/darkroom/healthcheck.py
# OpenVINO ships plugins for every Intel device and readers for every model format; Darkroom runs
# ONNX graphs on the CPU only (inference/backends.py). The GPU and NPU plugins (with the GPU's
# kernel-tuning cache.json), the TensorFlow, TFLite, PyTorch, Paddle, JAX and GGUF readers and the
# C++ headers are about 80 MB of the image that nothing loads. tests/deploy checks that OpenVINO
# still styles in the image.
RUN cd /opt/darkroom/lib/python3.*/site-packages/openvino \
    && rm -rf include cmake libs/cache.json libs/libopenvino_intel_gpu_plugin.so libs/libopenvino_intel_npu_plugin.so \
      libs/libopenvino_tensorflow_frontend.so.* libs/libopenvino_tensorflow_lite_frontend.so.* \
      libs/libopenvino_pytorch_frontend.so.* libs/libopenvino_paddle_frontend.so.* \
      libs/libopenvino_jax_frontend.so.* libs/libopenvino_gguf_frontend.so.*

# ---- the image: the venv on the bare base, run by an unprivileged user -------------------------
FROM ${BASE}
# One volume holds everything Darkroom keeps (the pseudonym key and the SQLite database): 0700,
# owned by the user Darkroom runs as. Photos never touch it (they stay in memory).
RUN groupadd --system --gid 10001 darkroom \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home --shell /usr/sbin/nologin darkroom \
    && mkdir -m 0700 /data && chown darkroom:darkroom /data
COPY --from=build /opt/darkroom /opt/darkroom
# DARKROOM_METRICS: the HTTP server then runs in every mode (Telegram polling has no other use
# for it), so the health check below has something to ask; /metrics names nobody.
ENV PATH=/opt/darkroom/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DARKROOM_DATA_DIR=/data \
    DARKROOM_HTTP_HOST=0.0.0.0 \
    DARKROOM_HTTP_PORT=8080 \
    DARKROOM_METRICS=true
USER darkroom:darkroom
WORKDIR /data
VOLUME ["/data"]
EXPOSE 8080
# The front answers GET /readyz on its HTTP port once it can take photos (a worker: its health
# port); deploy/healthcheck.py says which and why.
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 CMD ["python3", "/opt/darkroom/healthcheck.py"]
ENTRYPOINT ["darkroom"]
CMD ["run"]
