# sociomap container: CPU torch by default (PyTorch's CPU wheel index), the CUDA build by one argument.
#
#   docker build -t sociomap .                                              # CPU torch, no CUDA libraries
#   docker build -t sociomap:cuda --build-arg TORCH_VARIANT=cuda .          # CUDA torch (PyPI's Linux wheel)
#   docker build --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 --build-arg TORCH_VARIANT=cuda .
#
#   docker run --rm -v "$PWD:/data" -v hf:/models sociomap run /data/city.tif --osm /data/city.osm.pbf \
#     --classes park,school --out /data/layers
#   docker run --rm --gpus all -v "$PWD:/data" -v hf:/models sociomap:cuda run ...      # on a GPU host
#   docker run --rm -p 8765:8765 -v "$PWD:/data" sociomap view /data/layers --host 0.0.0.0
#
# torch is installed FIRST and pinned through a constraints file so nothing swaps it for another build;
# torch's vision add-on is never installed (it breaks beside a CPU torch and sociomap does not need it).
# docs/viewer.md#docker has the measured build and the commands run on the bundled example.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

ARG TORCH_VERSION=2.13.0
# cpu: torch from PyTorch's CPU-only index (about 190 MB, no nvidia-* wheels); the build fails if a CUDA
# build slips in. cuda: torch from PyPI, whose Linux wheels are CUDA builds (several GB with their
# nvidia-* libraries); the build fails if it is not one.
ARG TORCH_VARIANT=cpu
# Override the wheel index for either variant (a mirror, or one of PyTorch's cuXXX indexes).
ARG TORCH_INDEX_URL=""

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/models \
    SOCIOMAP_IN_CONTAINER=1

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# Runtime libraries only: the geo stack (rasterio, pyogrio, osmium, mapnik) ships its own GDAL/PROJ in wheels.
# Not version-pinned: the base image tag fixes the Debian release, and its security updates are wanted.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libexpat1 libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/sociomap
RUN case "$TORCH_VARIANT" in \
        cpu) index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}" ;; \
        cuda) index="${TORCH_INDEX_URL:-https://pypi.org/simple}" ;; \
        *) echo "TORCH_VARIANT must be cpu or cuda, not '$TORCH_VARIANT'" >&2; exit 2 ;; \
    esac \
    && pip install "torch==${TORCH_VERSION}" --index-url "$index" \
    && python -c "import sys, torch; cuda = torch.version.cuda; print('torch', torch.__version__, 'cuda', cuda); \
sys.exit(0 if (cuda is None) == ('$TORCH_VARIANT' == 'cpu') else 'torch build does not match TORCH_VARIANT=$TORCH_VARIANT')" \
    && pip freeze | grep -i '^torch==' > /opt/constraints.txt

COPY pyproject.toml README.md LICENSE ./
COPY sociomap ./sociomap
RUN pip install -c /opt/constraints.txt . \
    && pip check \
    && sociomap --version

# Model weights live in a volume: `docker run -v hf:/models ...`, then `sociomap model pull`.
VOLUME ["/models"]
WORKDIR /data
ENTRYPOINT ["sociomap"]
CMD ["--help"]
