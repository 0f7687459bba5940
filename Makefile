# Two commands for a new user: `make demo` and `make test`. Each builds .venv itself.
# torch goes in FIRST and stays pinned by constraints.txt: a bare `torch` would pull a multi-GB CUDA
# build, and torchvision is never installed (it breaks beside a CPU torch; see docs/install.md).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
# Extra pip arguments for the torch step only, e.g. a CPU or CUDA wheel index of your choice.
TORCH_PIP_ARGS ?=
BIN := $(VENV)/bin
DEMO_OUT ?= demo-out

.PHONY: demo test venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(BIN)/pip install -q -c constraints.txt -e ".[test]"
	touch $@

# Two outputs, each opened in the viewer and pictured (docs/viewer.md):
#  - Berkeley: the whole pipeline on the bundled imagery + map with a tiny RANDOM model: real tiling, model
#    calls, merge and exports, but the layers are empty/meaningless. (No OSM vectors are bundled for Berkeley,
#    so the weights-free `--reasoner osm` baseline cannot run there.)
#  - Helsinki: REAL layers, the OSM reference labels of the bundled extract, over the map rendered from the
#    same extract. (No imagery is bundled for Helsinki, so no model or baseline run there.)
HELSINKI_OSM := tests/data/helsinki.osm.pbf
HELSINKI_CLASSES := park,school,hospital,sport and cultural,residential,commercial

demo: venv
	$(BIN)/sociomap model init-tiny $(DEMO_OUT)/tiny-random-model
	$(BIN)/sociomap run examples/berkeley/naip_ucb_campus.tif \
		--map examples/berkeley/osm_carto_ucb_campus.tif \
		--classes park,school,"sport and cultural" \
		--model $(DEMO_OUT)/tiny-random-model/vlm --sam $(DEMO_OUT)/tiny-random-model/sam2 \
		--max-new-tokens 48 --out $(DEMO_OUT)/berkeley
	$(BIN)/sociomap export $(DEMO_OUT)/berkeley --format pmtiles
	$(BIN)/sociomap -q view $(DEMO_OUT)/berkeley --html $(DEMO_OUT)/berkeley-viewer.html
	$(BIN)/sociomap labels $(HELSINKI_OSM) --classes "$(HELSINKI_CLASSES)" --out $(DEMO_OUT)/helsinki
	$(BIN)/sociomap export $(DEMO_OUT)/helsinki --format pmtiles
	$(BIN)/sociomap export $(DEMO_OUT)/helsinki --format pictures
	$(BIN)/sociomap -q view $(DEMO_OUT)/helsinki --html $(DEMO_OUT)/helsinki-viewer.html
	@echo
	@echo "Helsinki: REAL layers (OSM reference labels of $(HELSINKI_OSM)) over the map rendered from it; no imagery bundled."
	@echo "  offline page  $(DEMO_OUT)/helsinki-viewer.html"
	@echo "  picture       $(DEMO_OUT)/helsinki/pictures/overview.png"
	@echo "  live viewer   $(BIN)/sociomap view $(DEMO_OUT)/helsinki   (http://127.0.0.1:8765/)"
	@echo "Berkeley: RANDOM-WEIGHTS model run over the bundled imagery and map; its layers are empty/meaningless."
	@echo "  offline page  $(DEMO_OUT)/berkeley-viewer.html"
	@echo "  picture       $(DEMO_OUT)/berkeley/pictures/overview.png"
	@echo "  live viewer   $(BIN)/sociomap view $(DEMO_OUT)/berkeley"

test: venv
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
