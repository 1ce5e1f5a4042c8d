# One entry point for people and CI. `make test` runs every check CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON313 := $(shell scripts/find-python313 2>/dev/null)
VENV := .venv
PY := $(VENV)/bin/python
SAM_VENV := .venv-sam
SAM := $(SAM_VENV)/bin/sam
SECURITY_VENV := .venv-security
export SAM_CLI_TELEMETRY := 0
# checkov would otherwise ask PyPI for a newer version on every run.
export CKV_SKIP_PACKAGE_UPDATE_CHECK := true
export AWS_DEFAULT_REGION ?= us-east-1

.PHONY: help install run test lint typecheck security unit template build bench demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# The venv is rebuilt whenever the pinned requirements change. `make run` installs only what it runs
# (requirements-run.txt: runtime dependencies and moto's server; marker .run-installed); everything
# else (marker .installed) adds the dev toolchain on top and covers `make run` too.
$(VENV)/.run-installed: requirements-run.txt src/requirements.txt pyproject.toml
	@test -n "$(PYTHON313)" || scripts/find-python313
	test -x $(PY) || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-run.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(VENV)/.installed: requirements-dev.txt requirements-run.txt src/requirements.txt pyproject.toml
	@test -n "$(PYTHON313)" || scripts/find-python313
	test -x $(PY) || $(PYTHON313) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(VENV)/.run-installed $@

# SAM CLI pins its own boto3 and friends: it lives in a venv of its own.
$(SAM_VENV)/.installed: requirements-sam.txt
	@test -n "$(PYTHON313)" || scripts/find-python313
	test -x $(SAM_VENV)/bin/python || $(PYTHON313) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-sam.txt
	touch $@

# checkov pins boto3==1.35.49, far older than the project's: it gets a venv of its own as well.
$(SECURITY_VENV)/.installed: requirements-security.txt
	@test -n "$(PYTHON313)" || scripts/find-python313
	test -x $(SECURITY_VENV)/bin/python || $(PYTHON313) -m venv $(SECURITY_VENV)
	$(SECURITY_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-security.txt
	touch $@

install: $(VENV)/.installed ## install everything into .venv

run: $(VENV)/.run-installed ## run the whole pipeline locally (webhook on :3000, moto on :5000)
	$(PY) -m local_runtime

lint: $(VENV)/.installed ## ruff (lint and format check)
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench

typecheck: $(VENV)/.installed ## mypy --strict on src/
	$(VENV)/bin/mypy

# checkov's settings are in .checkov.yaml; its suppressions sit on their resources in template.yaml,
# each with its reason. bandit: B101 (assert) is off as ruff's S101 is (pyproject.toml): asserts state
# invariants for mypy and guard no input. B404 flags `import subprocess` itself; every call is still
# checked (B602-B607). stripe_samples.py is sample Stripe objects, whose null `client_secret` fields
# bandit takes for passwords (a nosec inside the literal floods the output); ruff's S rules cover it.
security: $(SECURITY_VENV)/.installed ## checkov on template.yaml, bandit on src/
	$(SECURITY_VENV)/bin/checkov --config-file .checkov.yaml
	$(SECURITY_VENV)/bin/bandit --recursive src --quiet --skip B101,B404 --exclude src/local_runtime/stripe_samples.py

unit: $(VENV)/.installed ## pytest: unit, integration and end-to-end tests
	$(VENV)/bin/pytest

template: $(VENV)/.installed $(SAM_VENV)/.installed ## cfn-lint and sam validate --lint
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint --template template.yaml --region us-east-1

# sam build needs python3.13 on PATH: the venv's interpreter is one.
build: $(VENV)/.installed $(SAM_VENV)/.installed ## sam build (offline apart from the package registry)
	PATH="$(abspath $(VENV))/bin:$$PATH" $(SAM) build --template template.yaml --build-dir .aws-sam/build

test: lint typecheck security unit template build ## every check CI runs

# The cold-start benchmark (bench/cold_start.py) measures the packages `sam build` made.
bench: $(VENV)/.installed build ## benchmarks: ratios against baselines measured in the same run
	$(PY) -m bench

demo: $(VENV)/.run-installed ## send a signed demo sequence to a running `make run`
	$(PY) -m local_runtime.demo

clean: ## remove the venvs and build output
	rm -rf $(VENV) $(SAM_VENV) $(SECURITY_VENV) .aws-sam
