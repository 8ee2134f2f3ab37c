# The two set-up commands: `make repro` and `make test`. Both create .venv/ when needed.
PY := .venv/bin/python
STAMP := .venv/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: env repro test lint bench gpu-env gpu-check gpu-check-dry solver-study oracle-study rank studio
env: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	rm -f .venv/.installed-*
	touch $@

repro: env
	PATH="$(CURDIR)/.venv/bin:$$PATH" dvc repro
	$(PY) -m pipelines.summary

test: env
	$(PY) -m pytest -q

lint: env
	.venv/bin/ruff check pipelines model evaluation tests bench
	.venv/bin/ruff format --check pipelines model evaluation tests bench

bench: env
	mkdir -p bench/results
	set -e; for f in bench/bench_*.py; do echo "== $$f"; PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) $$f; done

# Borda ranking (FAD, CLAP, CCS) of the workspace and every experiment of `dvc exp show`; writes
# reports/ranking.json (docs/evaluation.md). RANK_ARGS="-- --all-commits" passes options to dvc exp show.
RANK_ARGS ?=
rank: env
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) -m pipelines.rank $(RANK_ARGS)

# The CUDA kernel environment (the `cuda` extra): mamba-ssm 2.3.2.post1 + causal-conv1d 1.7.0 compiled for this GPU.
# No prebuilt wheels exist for torch 2.13, so both build from source: nvcc of torch's CUDA major version, wheel and
# ninja in the venv, --no-build-isolation (the build imports the venv's torch); *_FORCE_BUILD skips the download of a
# prebuilt wheel that does not exist; MAX_JOBS bounds nvcc's memory. Tens of minutes. docs/gpu.md.
GPU_STAMP := .venv/.gpu-env-$(shell sha1sum pyproject.toml | cut -c1-12)
MAX_JOBS ?= 4
gpu-env: $(GPU_STAMP)

$(GPU_STAMP): $(STAMP)
	$(PY) -m pip install --quiet wheel ninja packaging setuptools
	MAMBA_FORCE_BUILD=TRUE CAUSAL_CONV1D_FORCE_BUILD=TRUE MAX_JOBS=$(MAX_JOBS) \
		$(PY) -m pip install --no-build-isolation -e '.[cuda]'
	$(PY) -c "import mamba_ssm.ops.selective_scan_interface as m; assert m.causal_conv1d_fwd_function, 'causal-conv1d'"
	rm -f .venv/.gpu-env-*
	touch $@

# On a GPU machine: the kernel tests, backend probes, scan parity, paper-size steps/s and memory per scan path, the
# largest batch, generation, DCAE and htdemucs throughput, 2-GPU DDP; writes bench/results/gpu.json (docs/gpu.md).
# Without the kernel environment: `python bench/gpu_check.py` with the machine's own Python (docs/gpu.md).
GPU_CHECK_ARGS ?=
gpu-check: gpu-env
	mkdir -p bench/results
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) bench/gpu_check.py $(GPU_CHECK_ARGS)

# the same sections on CPU with tiny sizes and Triton's interpreter (the test suite runs it)
gpu-check-dry: env
	$(PY) bench/gpu_check.py --dry-run --out bench/results/gpu-dry-run.json

# metric vs network evaluations per ODE solver on the trained model (docs/generation.md); ~20 CPU-minutes
solver-study: env
	PYTHONPATH=$(CURDIR) $(PY) bench/study_solvers.py --root . --prompts 20 --seeds 2 --max-nfe-others 25

# what a perfect generator would score with this run's own metrics (README "Results"); ~3 CPU-minutes after make repro
oracle-study: env
	PYTHONPATH=$(CURDIR) $(PY) bench/oracle_study.py --root .

# the studio page on http://127.0.0.1:7860 with models/final (docs/studio.md); STUDIO_ARGS="--port 8000 ..." for more
STUDIO_ARGS ?=
studio: env
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) -m pipelines.studio $(STUDIO_ARGS)
