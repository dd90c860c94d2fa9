# Two commands do everything on a fresh machine:  make run  |  make test
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml constraints.txt | md5sum | cut -c1-12)
NPROC := $(shell nproc)

# Offline models; math libraries pinned to the cores we have (no oversubscription).
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export OMP_NUM_THREADS ?= $(NPROC)
export MKL_NUM_THREADS ?= $(NPROC)
export OPENBLAS_NUM_THREADS ?= $(NPROC)

.PHONY: run test lint airflow bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || python3 -m venv $(VENV)
	# torch first: pip takes the local CPU wheel (or the platform's build) and no CUDA stack is pulled on CPU machines
	$(BIN)/pip install -q "torch==2.13.0"
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

## The main job: generate the demo catalog, run the nightly pipeline, print recommendations.
run: $(STAMP)
	$(BIN)/recsys data demo --out demo-data
	$(BIN)/recsys run --data demo-data --runs runs
	for u in u1 u2 u3; do $(BIN)/recsys recommend --user $$u --k 10 --runs runs; done

## The whole test suite (CI runs exactly this).
test: $(STAMP)
	scripts/system-deps.sh
	$(BIN)/ruff check recsys feature_store serving dags tests bench
	$(BIN)/mypy
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check recsys feature_store serving dags tests bench
	$(BIN)/ruff format --check recsys feature_store serving dags tests bench
	$(BIN)/mypy

## Local Airflow (UI/API on :8080, state in .airflow/) running dags/recsys_nightly.py; docs/airflow.md.
airflow: $(STAMP)
	VENV=$(abspath $(VENV)) scripts/airflow-standalone.sh

clean:
	rm -rf $(VENV) runs demo-data quarantine .airflow
