# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both install from the lock (requirements/dev.txt, hashes checked); `make lock` refreshes it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data
LOCK ?= requirements/dev.txt
PIP_VERSION := 26.3

.PHONY: setup demo serve test test-shuffled test-latest lint lock lock-upgrade sizes

$(BIN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q pip==$(PIP_VERSION)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/.installed

# The main job on the embedded default gallery: enrol a folder of people, identify a photo.
# `--gallery` keeps the demo's people out of the user's own default gallery file.
KNN := $(DATA)/faces/face_recognition/examples/knn_examples
demo: setup
	$(BIN)/faceprint enroll-dir $(KNN)/train --gallery demo-gallery.sqlite3
	$(BIN)/faceprint identify $(KNN)/test/*.jpg --top-k 2 --draw demo-out --gallery demo-gallery.sqlite3

# The service on the demo gallery: REST API (docs at http://127.0.0.1:8000/docs) and the browser app.
# A first admin key is created (printed once) if the gallery has none; sign in with it in the browser.
serve: setup
	@$(BIN)/faceprint keys list --gallery demo-gallery.sqlite3 | grep -q active || \
		$(BIN)/faceprint keys create --role admin --name "make serve" --gallery demo-gallery.sqlite3
	$(BIN)/faceprint serve --gallery demo-gallery.sqlite3

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

test: lint
	$(BIN)/python -m pytest

# The same suite in a random order (pytest-randomly; the seed is printed to reproduce a failure).
test-shuffled: setup
	$(BIN)/python -m pytest -p randomly -q

# Drift check: the suite against the newest versions pyproject.toml allows, in a separate venv.
LATEST := .venv-latest
test-latest:
	$(PYTHON) -m venv $(LATEST)
	$(LATEST)/bin/python -m pip install -q --upgrade pip
	$(LATEST)/bin/python -m pip install -q --upgrade --upgrade-strategy eager -e '.[dev]'
	$(LATEST)/bin/python -m pip list --format=freeze > $(LATEST)/versions.txt
	$(LATEST)/bin/python -m pytest -q -p no:randomly

# Refresh the lock files from pyproject.toml (keeping current pins where allowed); lock-upgrade: newest allowed.
lock: setup
	$(BIN)/python requirements/lock.py
lock-upgrade: setup
	$(BIN)/python requirements/lock.py --upgrade

# Installed size of each flavour (core, each extra), each in a throwaway venv.
sizes:
	$(BIN)/python bench/install_sizes.py
