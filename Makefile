# Two commands, on a fresh machine (Debian-like, Python 3.11; root or sudo for apt):
#   make up     set up everything, then run the whole gateway on its own local Kafka
#   make test   set up everything, then lint (ruff, mypy) and run the test suite (unit + integration)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the gateway, its tests and benchmarks start for real
PACKAGES := openjdk-17-jre-headless maven kcat swaks postfix clamav-daemon clamdscan clamav-testfiles \
            dovecot-pop3d spamassassin spamd spamc
# rustup's cargo, for the spam filter's Rust extension that pip builds (setuptools-rust)
export PATH := $(HOME)/.cargo/bin:$(PATH)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up test lint setup venv tools clean
up: setup
	$(BIN)/mailgate up

test: setup lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff (lint only, the rules in pyproject.toml) and mypy (strict on core/ and schemas/)
lint: venv
	$(BIN)/ruff check .
	$(BIN)/mypy

setup: tools venv

# pip runs every time (a second or two when nothing changed): a venv left over from another
# checkout or an older pyproject.toml is brought up to date, never trusted by a timestamp.
venv:
	@[ -x $(BIN)/python ] || { $(PYTHON) -m venv $(VENV) && $(BIN)/pip install --quiet --upgrade pip; }
	$(BIN)/pip install --quiet -e '.[test]'
	@$(BIN)/python -c 'import dns.resolver, grpc_tools, faust, confluent_kafka, aiosmtpd, streams.spam._native' || \
	  { echo "the virtualenv $(VENV) lacks packages pyproject.toml names: rm -rf $(VENV) and run make again" >&2; exit 1; }

tools:
	@missing=""; for pkg in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) *.egg-info streams/spam/rust/target streams/spam/_native*.so
