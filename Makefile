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

demo: venv
	$(BIN)/sociomap model init-tiny $(DEMO_OUT)/tiny-random-model
	$(BIN)/sociomap run examples/berkeley/naip_ucb_campus.tif \
		--map examples/berkeley/osm_carto_ucb_campus.tif \
		--classes park,school,"sport and cultural" \
		--model $(DEMO_OUT)/tiny-random-model/vlm --sam $(DEMO_OUT)/tiny-random-model/sam2 \
		--max-new-tokens 48 --out $(DEMO_OUT)/layers
	$(BIN)/sociomap export $(DEMO_OUT)/layers --format pmtiles

test: venv
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
