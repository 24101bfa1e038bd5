# Two commands, on a fresh machine (Debian-like, Python 3.11; root or sudo for apt):
#   make up     set up everything, then run the whole gateway on its own local Kafka
#   make test   set up everything, then run the test suite (unit + integration)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the gateway, its tests and benchmarks start for real
PACKAGES := openjdk-17-jre-headless maven kcat swaks postfix clamav-daemon clamdscan clamav-testfiles \
            dovecot-pop3d spamassassin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: up test setup tools clean
up: setup
	$(BIN)/mailgate up

test: setup
	$(BIN)/python -m pytest $(PYTEST_ARGS)

setup: tools $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

tools:
	@missing=""; for pkg in $(PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$pkg 2>/dev/null | grep -q "ok installed" || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) *.egg-info
