# The two commands of the README, plus helpers. Every target sets up first (idempotent).
VENV := .venv/bin

.PHONY: setup demo test lint bench

setup:
	@bash scripts/setup.sh

demo: setup
	$(VENV)/cllm demo

test: setup
	$(VENV)/ruff check .
	$(VENV)/python -m pytest

lint: setup
	$(VENV)/ruff check .

# Every benchmark in its quick mode (bench/common.py), each writing bench/results/<name>.json,
# then the README's table from those files. Minutes each; under 10 minutes in all on 2 cores.
# langid and dedup take explicit small sizes until they accept --quick; dedup's peer needs
# datatrove in a venv of its own (see bench/dedup.py).
BENCH_QUICK := extract tokenization train crawl pii rerun sample scale
bench: setup
	@set -e; for b in $(BENCH_QUICK); do \
	  echo "== bench/$$b.py --quick"; PYTHONPATH=. $(VENV)/python bench/$$b.py --quick; done
	PYTHONPATH=. $(VENV)/python bench/langid.py --docs-per-language 20 --runs 3
	-PYTHONPATH=. $(VENV)/python bench/dedup.py --per-kind 3 --runs 1
	PYTHONPATH=. $(VENV)/python bench/report.py
