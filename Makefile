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
