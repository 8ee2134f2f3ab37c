# The two set-up commands: `make repro` and `make test`. Both create .venv/ when needed.
PY := .venv/bin/python
STAMP := .venv/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: env repro test lint bench gpu-check solver-study oracle-study studio
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

# On a GPU machine: pytest -m cuda, scan parity, paper-size steps/s and memory, generation, DCAE and htdemucs
# throughput, 2-GPU DDP; writes bench/results/gpu.json (docs/gpu.md). GPU_CHECK_ARGS=--dry-run runs it on CPU.
GPU_CHECK_ARGS ?=
gpu-check: env
	mkdir -p bench/results
	PATH="$(CURDIR)/.venv/bin:$$PATH" $(PY) bench/gpu_check.py $(GPU_CHECK_ARGS)

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
