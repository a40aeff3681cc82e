# The two commands of the README. Both install what they need first (scripts/setup).
VENV ?= $(or $(DIFFSEG_VENV),.venv)
export DIFFSEG_VENV := $(VENV)
export PATH := $(abspath $(VENV))/bin:$(PATH)
# The offline profile never reaches a model hub; a hub id fails fast instead of retrying.
export HF_HUB_OFFLINE := 1
export DVC_NO_ANALYTICS := 1

.PHONY: setup repro test

setup:
	scripts/setup

repro: setup
	dvc repro

test: setup
	python -m pytest

.PHONY: check-metrics
# After `make repro`: the reproduced metrics against the committed ones (README, "Committed results").
check-metrics: setup
	diffseg check-metrics
