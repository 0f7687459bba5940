# sociomap container: CPU by default, CUDA torch with a build argument.
#
#   docker build -t sociomap .                                   # CPU-only torch
#   docker build -t sociomap:cuda \
#     --build-arg TORCH_INDEX_URL=<your CUDA wheel index, e.g. PyTorch's cu126 index> .
#   docker run --rm -v "$PWD:/data" sociomap run /data/city.tif --osm /data/city.osm.pbf \
#     --classes park,school --out /data/layers
#   docker run --gpus all ... sociomap:cuda run ...               # GPU
#
# torch is installed FIRST and pinned through constraints.txt so nothing swaps it for another build;
# torch's vision add-on is never installed (it breaks beside a CPU torch and sociomap does not need it).
FROM python:3.11-slim-bookworm

ARG TORCH_VERSION=2.13.0
# Empty = PyPI. Point it at a CPU or CUDA wheel index to choose the torch build.
ARG TORCH_INDEX_URL=""

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/models \
    SOCIOMAP_IN_CONTAINER=1

# Runtime libraries only: the geo stack (rasterio, pyogrio, osmium) ships its own GDAL/PROJ in wheels.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libexpat1 libgomp1 ca-certificates \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/sociomap
RUN if [ -n "$TORCH_INDEX_URL" ]; then \
        pip install "torch==${TORCH_VERSION}" --index-url "$TORCH_INDEX_URL"; \
    else \
        pip install "torch==${TORCH_VERSION}"; \
    fi \
    && python -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    && pip freeze | grep -i '^torch==' > /opt/constraints.txt

COPY pyproject.toml README.md LICENSE ./
COPY sociomap ./sociomap
RUN pip install -c /opt/constraints.txt . \
    && pip check \
    && sociomap --version

# Model weights live in a volume: `docker run -v hf-cache:/models ...`, then `sociomap model pull`.
VOLUME ["/models"]
WORKDIR /data
ENTRYPOINT ["sociomap"]
CMD ["--help"]
