# The two set-up commands: `make repro` and `make test`. Both create .venv/ when needed.
PY := .venv/bin/python
STAMP := .venv/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)

.PHONY: env repro test lint bench gpu-check solver-study oracle-study rank
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
