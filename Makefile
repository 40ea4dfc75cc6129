# Works on a fresh machine with only Python 3.11 and pip: every target builds .venv first.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: test lint typecheck demo bench docs clean aws-package aws-tfvars aws-plan azure-package gcp-package gcp-os-policy

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,aws,azure,gcp]'
	@touch $(STAMP)

test: $(STAMP) lint typecheck
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

demo: $(STAMP)
	$(BIN)/quiesce demo

bench: $(STAMP)
	$(BIN)/python bench/freeze_window.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

docs: $(STAMP)
	$(BIN)/python -m quiesce.reference docs

# AWS deployment (see docs/aws-deploy.md)
AWS_POLICY ?= policy.yaml
AWS_REGION ?= eu-central-1
AZURE_POLICY ?= policy.yaml
GCP_POLICY ?= policy.yaml
GCP_BUCKET ?=

aws-package: $(STAMP)
	$(BIN)/python scripts/package_aws.py --policy $(AWS_POLICY)

azure-package: $(STAMP)
	$(BIN)/python scripts/package_functions.py azure --policy $(AZURE_POLICY)

aws-tfvars: $(STAMP)
	$(BIN)/python scripts/aws_triggers.py $(AWS_POLICY)

aws-plan: aws-package aws-tfvars
	terraform -chdir=infra/aws init -input=false
	terraform -chdir=infra/aws plan -var region=$(AWS_REGION)

gcp-package: $(STAMP)
	$(BIN)/python scripts/package_functions.py gcp --policy $(GCP_POLICY)

gcp-os-policy: $(STAMP)
	$(BIN)/python scripts/gcp_os_policy.py $(GCP_POLICY) --bucket $(GCP_BUCKET)
