# One entry point for people and CI. `make test` runs every check CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON313 := $(shell scripts/find-python313 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
export SAM_CLI_TELEMETRY := 0
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help install run test lint typecheck unit template build bench demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The venv is rebuilt whenever the pinned requirements change.
$(VENV)/.installed: requirements-dev.txt src/requirements.txt pyproject.toml
	@test -n "$(PYTHON313)" || scripts/find-python313
	test -x $(PY) || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

# SAM CLI pins its own boto3 and friends: it lives in a venv of its own.
$(SAM_VENV)/.installed: requirements-sam.txt
	@test -n "$(PYTHON313)" || scripts/find-python313
	test -x $(SAM_VENV)/bin/python || $(PYTHON313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	touch $@

install: $(VENV)/.installed ## install everything into .venv

run: $(VENV)/.installed ## run the whole pipeline locally (webhook on :3000, moto on :5000)
	$(PY) -m local_runtime

lint: $(VENV)/.installed ## ruff (lint and format check)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(VENV)/.installed ## mypy --strict on src/
	$(VENV)/bin/mypy

unit: $(VENV)/.installed ## pytest: unit, integration and end-to-end tests
	$(VENV)/bin/pytest

template: $(VENV)/.installed $(SAM_VENV)/.installed ## cfn-lint and sam validate --lint
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint --template template.yaml --region us-east-1

# sam build needs python3.13 on PATH: the venv's interpreter is one.
build: $(VENV)/.installed $(SAM_VENV)/.installed ## sam build (offline apart from the package registry)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(SAM) build --template template.yaml --build-dir .aws-sam/build

test: lint typecheck unit template build ## every check CI runs

bench: $(VENV)/.installed ## benchmarks: ratios against baselines measured in the same run
	$(PY) -m bench

demo: $(VENV)/.installed ## send a signed demo sequence to a running `make run`
	$(PY) -m local_runtime.demo

clean: ## remove the venvs and build output
	rm -rf $(VENV) $(SAM_VENV) .aws-sam
