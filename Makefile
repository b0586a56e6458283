# breakwater — two commands for a fresh clone: `make demo` and `make test`.
# Both bootstrap everything they need (.venv with Python 3.13, npm and apt packages).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON313 ?= $(shell command -v python3.13 2>/dev/null || ls $(HOME)/.pyenv/versions/3.13*/bin/python3.13 2>/dev/null | head -n1)
VENV      := .venv
BIN       := $(VENV)/bin
STAMP     := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
TEMPLATES := template.yaml tests/fixtures/app/template.yaml
# Each function folder is its own root (every handler is `app`), so each is checked on its own.
PY_SOURCES := layers/resilience/resilience local_runtime tests bench tools
FUNCTION_DIRS := $(sort $(dir $(wildcard functions/*/app.py tests/fixtures/app/functions/*/app.py)))

# No call can ever reach a real AWS account from here.
export AWS_ACCESS_KEY_ID ?= testing
export AWS_SECRET_ACCESS_KEY ?= testing
export AWS_SESSION_TOKEN ?= testing
export AWS_DEFAULT_REGION ?= us-east-1
export AWS_REGION ?= us-east-1
export AWS_EC2_METADATA_DISABLED := true
export SAM_CLI_TELEMETRY := 0
export SAM_CLI_DISABLE_VERSION_CHECK := 1
export PATH := $(CURDIR)/$(BIN):$(PATH)

.PHONY: help demo test checks lint typecheck cfn-lint sam-validate asl scan build pytest containers lambda-image bench clean browser

help:
	@echo "make demo   run a workflow offline with an injected fault, print its timeline, write the HTML trace"
	@echo "make test   lint, typecheck, cfn-lint, sam validate --lint, ASL validation, security scan, sam build (side by side), pytest, containers"
	@echo "make containers  every function in a real Lambda container (sam local; builds the image once)"
	@echo "make bench  run the benchmarks in bench/ (prints figures, asserts nothing)"

$(STAMP): pyproject.toml
	@test -n "$(PYTHON313)" || { echo "python3.13 not found (pyenv install 3.13, or set PYTHON313=...)"; exit 1; }
	$(PYTHON313) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# The HTML-trace test renders the page in a real headless Chromium (Debian package).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing chromium (apt)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

demo: $(STAMP)
	$(BIN)/bw demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy $(PY_SOURCES)
	@for d in $(FUNCTION_DIRS); do echo "mypy $$d"; MYPYPATH=$$d:layers/resilience $(BIN)/mypy $$d/app.py || exit 1; done

cfn-lint: $(STAMP)
	$(BIN)/cfn-lint $(TEMPLATES)

sam-validate: $(STAMP)
	@for t in $(TEMPLATES); do echo "sam validate --lint -t $$t"; $(BIN)/sam validate --lint -t $$t || exit 1; done

asl: $(STAMP) $(NODE_STAMP)
	$(BIN)/python tools/check_asl.py $(TEMPLATES)

# checkov and cfn-lint's informational/experimental rules, held to security/scan-baseline.yaml
# (every accepted finding says why; a new one fails). checkov gets its own venv inside .venv:
# it pins a boto3 older than the runtime's.
CHECKOV_VENV  := $(VENV)/checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
$(CHECKOV_STAMP): tools/checkov-requirements.txt | $(STAMP)
	$(PYTHON313) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet -r tools/checkov-requirements.txt
	@touch $@

scan: $(STAMP) $(CHECKOV_STAMP)
	$(BIN)/python tools/scan.py --checkov $(CHECKOV_VENV)/bin/checkov template.yaml

# Into a throwaway workspace: the build, SAM's cache and the build.toml SAM writes beside the build dir.
build: $(STAMP)
	@set -e; for t in $(TEMPLATES); do \
		ws=$$(mktemp -d); \
		echo "sam build -t $$t --build-dir $$ws/build"; \
		$(BIN)/sam build -t $$t --build-dir $$ws/build --cache-dir $$ws/cache >$$ws/build.log 2>&1 \
			|| { cat $$ws/build.log; rm -rf $$ws; exit 1; }; \
		$(BIN)/python tools/check_build.py $$t $$ws/build || { rm -rf $$ws; exit 1; }; \
		rm -rf $$ws; \
	done

# Every test run records the IAM grants it used and the calls IAM refused; a refused call
# is a missing grant in the template and fails the build, and so does a grant the whole
# suite never used unless iam-allowance.yaml keeps it with a reason (`bw iam` prints the report).
# The suite runs one worker per core (pytest-xdist), a test file per worker at a time so a
# module's shared stack is started once; the workers append to one usage file, a locked line
# each. The 25 slowest tests are printed at the end.
IAM_USAGE := .bw/iam-usage.jsonl
pytest: $(STAMP) browser
	@mkdir -p .bw && rm -f $(IAM_USAGE)
	BW_IAM_USAGE=$(CURDIR)/$(IAM_USAGE) $(BIN)/pytest -n $(JOBS) --dist loadfile --durations=25
	$(BIN)/bw iam --usage $(IAM_USAGE) --check --strict

# The container tier: `sam local` runs every function on the python3.13 arm64 Lambda image
# (and `bw up --containers` runs a speaker and a listener on this host's architecture),
# built offline once (tools/lambda_image.sh: debootstrap + awslambdaric, ~3 min; later runs
# reuse it). Installs Docker, qemu and binfmt with apt when missing; a dockerd it starts is
# stopped at the end.
LAMBDA_IMAGE_NICE := nice -n 19 ionice -c3
# arm64 is the template's; on another host the cases also run on that host's own architecture.
LAMBDA_ARCHS := arm64 $(if $(filter aarch64 arm64,$(shell uname -m)),,x86_64)
lambda-image: $(STAMP)
	@for arch in $(LAMBDA_ARCHS); do \
		BW_PIP=$(CURDIR)/$(BIN)/pip $(LAMBDA_IMAGE_NICE) bash tools/lambda_image.sh --arch $$arch || exit 1; done

containers: $(STAMP)
	@set -e; source tools/docker_env.sh; \
		had_docker=0; docker info >/dev/null 2>&1 && had_docker=1; \
		bw_docker_ready; status=0; \
		for arch in $(LAMBDA_ARCHS); do \
			BW_PIP=$(CURDIR)/$(BIN)/pip $(LAMBDA_IMAGE_NICE) bash tools/lambda_image.sh --arch $$arch || status=$$?; done; \
		if [[ $$status == 0 ]]; then $(BIN)/pytest -m containers tests/containers || status=$$?; fi; \
		if [[ $$had_docker == 0 ]]; then bw_docker_stop; fi; \
		exit $$status

# The static checks are independent single-process tools: they run side by side, one per
# core (each one's output printed whole when it ends), before pytest and the container tier.
CHECKS := lint typecheck cfn-lint sam-validate asl scan build
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
checks:
	@$(MAKE) --no-print-directory -j$(JOBS) --output-sync=target $(CHECKS)

test: checks
	@$(MAKE) --no-print-directory pytest
	@$(MAKE) --no-print-directory containers

bench: $(STAMP)
	@for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) node_modules .aws-sam .bw .mypy_cache .ruff_cache .pytest_cache
