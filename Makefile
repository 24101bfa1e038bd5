# Two commands, on a fresh machine (Debian-like, Python 3.11; root or sudo for apt):
#   make up     set up everything, then run the whole gateway on its own local Kafka
#   make test   set up everything, then run the test suite (unit + integration)
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# command:package — Debian packages the gateway, its tests and benchmarks start for real
TOOLS := java:openjdk-17-jre-headless mvn:maven kcat:kcat swaks:swaks smtp-source:postfix \
         clamd:clamav-daemon dovecot:dovecot-pop3d spamassassin:spamassassin
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
	@missing=""; for pair in $(TOOLS); do cmd=$${pair%%:*}; pkg=$${pair##*:}; \
	  PATH="$$PATH:/usr/sbin:/sbin" command -v $$cmd >/dev/null || missing="$$missing $$pkg"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

clean:
	rm -rf $(VENV) *.egg-info
