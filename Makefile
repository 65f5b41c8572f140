# aam-pipeline — every target installs what it needs into a project-local .venv, idempotently.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch that these machines carry; on a GPU machine install a CUDA build of torch
# into .venv first (see README) and `make install` keeps it.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo-out
PYTEST_ARGS ?=

.PHONY: install demo test test-fast lint typecheck arch ci bench bench-gpu bench-seeds bench-second bench-ceiling faults encoder clean

install: $(STAMP)
	@:

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --upgrade pip >/dev/null 2>&1 || true
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC) > $(VENV)/install.log 2>&1 \
		|| (cat $(VENV)/install.log; exit 1)
	@$(PY) -m pip install -q -e '.[dev]' > $(VENV)/install.log 2>&1 || (cat $(VENV)/install.log; exit 1)
	@touch $(STAMP)
	@echo "installed aam-pipeline into $(VENV)"

demo: install
	@$(VENV)/bin/aam-pipeline demo --out $(DEMO_OUT)

# The whole suite but GPU tests (slow ones included); `make test-fast` skips the slow ones.
test: install
	@$(PY) -m pytest -q -m "not gpu" $(PYTEST_ARGS)

test-fast: install
	@$(PY) -m pytest -q -m "not gpu and not slow" $(PYTEST_ARGS)

lint: install
	@$(VENV)/bin/ruff check cli flows pipeline stores tests benchmarks
	@$(VENV)/bin/ruff format --check cli flows pipeline stores tests benchmarks

typecheck: install
	@$(VENV)/bin/mypy cli flows pipeline stores

arch: install
	@$(PY) -m pytest -q tests/test_architecture.py

ci: lint typecheck arch test

encoder: install
	@$(VENV)/bin/aam-pipeline pretrain-encoder --seed 0

# Each benchmark writes its JSON under bench-out/; the last step prints the judged figures in one block
# and fails when a benchmark did not produce its file (the others still run).
bench: install
	@mkdir -p bench-out
	@rm -f bench-out/extract-cpu.json bench-out/adapter-cpu.json bench-out/dask.json bench-out/scale-hmdb.json
	-@$(PY) benchmarks/bench_extract.py --json bench-out/extract-cpu.json
	-@$(PY) benchmarks/bench_adapter.py --threads 1 --json bench-out/adapter-cpu.json
	-@$(PY) benchmarks/bench_dask.py --work bench-out/dask --json bench-out/dask.json
	-@$(PY) benchmarks/bench_scale.py --preset hmdb --work bench-out/scale-hmdb --epochs 1 --threads 1 \
		--json bench-out/scale-hmdb.json
	@$(PY) benchmarks/bench_summary.py --extract bench-out/extract-cpu.json --adapter bench-out/adapter-cpu.json \
		--dask bench-out/dask.json --scale bench-out/scale-hmdb.json

# Kills at writes, two writers, full/read-only filesystems, the published-byte scan (docs/latent-cache.md).
faults: install
	@$(PY) benchmarks/fault_injection.py --quick

bench-gpu: install
	@$(PY) benchmarks/bench_extract.py --gpu
	@$(PY) benchmarks/bench_adapter.py --gpu

# The default adapter against its eraser without the clip-shared directions, five seeds, on the dev
# benchmark (other people than the demo's; recipes are chosen here, never on the demo's test split).
DEV_OUT ?= bench-out/dev
bench-seeds: install
	@$(VENV)/bin/aam-pipeline synth $(DEV_OUT)/data --preset dev --seed 1
	@$(VENV)/bin/aam-pipeline extract --manifest $(DEV_OUT)/data/manifest.parquet --encoder tiny --out $(DEV_OUT)/latents.zarr
	@$(PY) benchmarks/adapter_seeds.py --store $(DEV_OUT)/latents.zarr --seeds 0,1,2,3,4 \
		--variant default --variant static-only:erase_clip_dims=0 --out $(DEV_OUT)/seeds \
		--json bench-out/adapter-seeds.json

# The same default recipe on a benchmark it was never chosen on: the demo preset with another seed (other
# people and scenes) and another encoder (tiny pretrained from another seed, as TorchScript:
# benchmarks/second_encoder.py).
SECOND_OUT ?= bench-out/second
bench-second: install
	@$(PY) benchmarks/second_encoder.py --out $(SECOND_OUT)/encoder.pt --workdir $(SECOND_OUT)/pretrain
	@$(VENV)/bin/aam-pipeline synth $(SECOND_OUT)/data --preset demo --seed 2
	@$(VENV)/bin/aam-pipeline extract --manifest $(SECOND_OUT)/data/manifest.parquet \
		--encoder torchscript:$(SECOND_OUT)/encoder.pt --crop 96 --out $(SECOND_OUT)/latents.zarr
	@$(PY) benchmarks/adapter_seeds.py --store $(SECOND_OUT)/latents.zarr --seeds 0,1,2,3,4 --attackers full \
		--variant default --out $(SECOND_OUT)/seeds --json bench-out/second-seeds.json

# Diagnostic: a linear eraser that knows the private labels, on top of the demo's adapter (docs/adapter.md).
bench-ceiling: install
	@test -d $(DEMO_OUT)/adapter || (echo "run 'make demo' first: no $(DEMO_OUT)/adapter"; exit 2)
	@$(PY) benchmarks/eraser_ceiling.py --store $(DEMO_OUT)/latents.zarr --adapter $(DEMO_OUT)/adapter

clean:
	rm -rf $(DEMO_OUT) bench-out .pytest_cache .mypy_cache .ruff_cache
