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

.PHONY: help install lock lock-check run test lint typecheck security unit template build bench demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

# Every environment installs from uv.lock, hash-checked, and nothing else (README, "Dependencies").
# uv itself comes from the lock too: scripts/bootstrap-uv installs the release the lock pins.
UV_VENV := .venv-uv
UV := $(UV_VENV)/bin/uv
# package-conflicts: the SAM CLI and the scanners pin their own boto3 (pyproject.toml, `conflicts`).
export UV_PREVIEW_FEATURES := package-conflicts
export UV_PYTHON_DOWNLOADS := never
UV_SYNC = $(UV) sync --frozen --python $(PYTHON313) --quiet

$(UV): uv.lock scripts/bootstrap-uv
	@test -n "$(PYTHON313)" || scripts/find-python313
	$(PYTHON313) scripts/bootstrap-uv $(UV_VENV)
	touch $@

# `make run` installs only what it runs (the runtime and the `run` group: moto's server; marker
# .run-installed); everything else (marker .installed) syncs the `dev` group, which covers `make run`.
$(VENV)/.run-installed: uv.lock pyproject.toml $(UV)
	@test -n "$(PYTHON313)" || scripts/find-python313
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV_SYNC) --package stripe-aws-sync --group run
	touch $@

$(VENV)/.installed: uv.lock pyproject.toml $(UV)
	@test -n "$(PYTHON313)" || scripts/find-python313
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV_SYNC) --package stripe-aws-sync --group dev
	touch $(VENV)/.run-installed $@

# SAM CLI pins its own boto3 and friends: it lives in a venv of its own (tools/sam, same lock).
$(SAM_VENV)/.installed: uv.lock tools/sam/pyproject.toml $(UV)
	@test -n "$(PYTHON313)" || scripts/find-python313
	UV_PROJECT_ENVIRONMENT=$(SAM_VENV) $(UV_SYNC) --package sam-cli
	touch $@

# checkov pins boto3==1.35.49, far older than the project's: a venv of its own as well (tools/security).
$(SECURITY_VENV)/.installed: uv.lock tools/security/pyproject.toml $(UV)
	@test -n "$(PYTHON313)" || scripts/find-python313
	UV_PROJECT_ENVIRONMENT=$(SECURITY_VENV) $(UV_SYNC) --package security-scanners
	touch $@

lock: $(UV) ## update uv.lock on purpose: after editing pyproject.toml, or `make lock UPGRADE=pkg`
	$(UV) lock --python $(PYTHON313) $(if $(UPGRADE),$(foreach p,$(UPGRADE),--upgrade-package $(p)))

lock-check: $(UV) ## fail when pyproject.toml and uv.lock disagree
	$(UV) lock --check --python $(PYTHON313)

install: $(VENV)/.installed ## install everything into .venv

# The demo draws its stories from events/ (sample data, never packaged): `python -m` puts the working
# directory, the repository root, on the path.
run: $(VENV)/.run-installed ## run the whole pipeline locally (webhook on :3000, moto on :5000)
	$(PY) -m local_runtime

lint: $(VENV)/.installed ## ruff (lint and format check)
	$(VENV)/bin/ruff check src events harness scripts tests bench
	$(VENV)/bin/ruff format --check src events harness scripts tests bench

typecheck: $(VENV)/.installed ## mypy --strict on src/, events/, harness/ and scripts/
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy scripts/bootstrap-uv

# checkov's settings are in .checkov.yaml; its suppressions sit on their resources in template.yaml,
# each with its reason. bandit: B101 (assert) is off as ruff's S101 is (pyproject.toml): asserts state
# invariants for mypy and guard no input. B404 flags `import subprocess` itself; every call is still
# checked (B602-B607). Sample Stripe data lives in events/, outside src/, so nothing is excluded.
security: $(SECURITY_VENV)/.installed ## checkov on template.yaml, bandit on src/
	$(SECURITY_VENV)/bin/checkov --config-file .checkov.yaml
	$(SECURITY_VENV)/bin/bandit --recursive src --quiet --skip B101,B404

unit: $(VENV)/.installed ## pytest: unit, integration and end-to-end tests
	$(VENV)/bin/pytest

template: $(VENV)/.installed $(SAM_VENV)/.installed ## cfn-lint and sam validate --lint
	$(VENV)/bin/cfn-lint template.yaml
	$(SAM) validate --lint --template template.yaml --region us-east-1

# sam build needs python3.13 on PATH: the venv's interpreter is one.
build: $(VENV)/.installed $(SAM_VENV)/.installed ## sam build (offline apart from the package registry)
	UV="$(abspath $(UV))" PATH="$(abspath $(VENV))/bin:$$PATH" $(SAM) build --template template.yaml --build-dir .aws-sam/build

test: lock-check lint typecheck security unit template build ## every check CI runs

# The cold-start benchmark (bench/cold_start.py) measures the packages `sam build` made.
bench: $(VENV)/.installed build ## benchmarks: ratios against baselines measured in the same run
	$(PY) -m bench

demo: $(VENV)/.run-installed ## send a signed demo sequence to a running `make run`
	$(PY) -m local_runtime.demo

clean: ## remove the venvs and build output
	rm -rf $(VENV) $(SAM_VENV) $(SECURITY_VENV) $(UV_VENV) .aws-sam
