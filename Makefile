# EdgeSite developer entry points. `make sandbox` and `make test` are the two commands of the README.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV)/bin)
export PATH := $(BIN):$(PATH)
export CONTAINERS_CONF := $(abspath tools/containers.conf)
export ANSIBLE_CONFIG := $(abspath ansible.cfg)
SANDBOX_INVENTORY := inventories/sandbox/hosts.yml
# Test files run in parallel (one file per worker): most of their time is spent waiting on
# podman hosts, etcd and ansible-playbook, not on the 2 CPUs.
PYTEST_JOBS ?= 3
PLAYBOOKS := site.yml $(wildcard playbooks/*.yml) $(wildcard playbooks/awx/*.yml)

.PHONY: help venv hostdeps image sandbox sandbox-down test lint sanity unit molecule clean

help:
	@echo "make sandbox      create the local podman site and run site.yml against it"
	@echo "                  (ARTIFACTS=dir: pinned k3s artifacts for the air-gapped install)"
	@echo "make test         lint + unit/integration tests + molecule scenarios (what CI runs)"
	@echo "make sandbox-down remove the sandbox hosts"

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

hostdeps:
	python3 tools/testhosts.py deps

image: hostdeps
	python3 tools/testhosts.py image

sandbox: venv image
	python3 tools/testhosts.py up --name sandbox --masters 3 --workers 2 --inventory $(SANDBOX_INVENTORY)
	$(BIN)/ansible-playbook -i $(SANDBOX_INVENTORY) site.yml $(if $(ARTIFACTS),-e edgesite_artifacts_dir=$(abspath $(ARTIFACTS)))

sandbox-down:
	python3 tools/testhosts.py down --name sandbox

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/ansible-lint --profile production
	for pb in $(PLAYBOOKS); do $(BIN)/ansible-playbook -i inventories/example --syntax-check $$pb || exit 1; done

# ansible-test bootstraps pip in its venvs with a script from ci-files.testing.ansible.com;
# where that host is unreachable, tools/ansible_test_get_pip.py does the same from PyPI.
# 24.2 is the pip version ansible-test 2.19 pins.
ANSIBLE_TEST_GET_PIP := $(HOME)/.ansible/test/cache/get_pip_24_2.py
sanity: venv
	mkdir -p $(dir $(ANSIBLE_TEST_GET_PIP))
	[ -f $(ANSIBLE_TEST_GET_PIP) ] || cp tools/ansible_test_get_pip.py $(ANSIBLE_TEST_GET_PIP)
	cd collections/ansible_collections/edgesite/fleet && $(BIN)/ansible-test sanity --python 3.11

unit: venv
	$(BIN)/pytest -q -n $(PYTEST_JOBS) --dist loadfile

molecule: venv image
	tools/molecule_all.sh

test: lint sanity unit molecule

clean:
	rm -rf .cache
