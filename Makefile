# The two commands of the README, plus helpers. Every target sets up first (idempotent).
VENV := .venv/bin

.PHONY: setup demo test lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/cllm demo

test: setup
	$(VENV)/ruff check .
	$(VENV)/python -m pytest -n 2 --dist loadfile

lint: setup
	$(VENV)/ruff check .

# Every benchmark in its quick mode (bench/common.py), each writing bench/results/<name>.json,
# then the README's table from those files. Minutes each; under 10 minutes in all on 2 cores.
# dedup's peer needs datatrove in a venv of its own (see bench/dedup.py): name its python in
# DATATROVE_PYTHON, or dedup is left out (its results file stays as it was).
BENCH_QUICK := extract tokenization train crawl langid pii rerun sample scale
bench: setup
	@set -e; for b in $(BENCH_QUICK); do \
	  echo "== bench/$$b.py --quick"; PYTHONPATH=. $(VENV)/python bench/$$b.py --quick; done
	@if [ -n "$(DATATROVE_PYTHON)" ]; then PYTHONPATH=. $(VENV)/python bench/dedup.py --quick \
	  --datatrove-python "$(DATATROVE_PYTHON)"; else echo "== dedup left out: DATATROVE_PYTHON unset"; fi
	PYTHONPATH=. $(VENV)/python bench/report.py
