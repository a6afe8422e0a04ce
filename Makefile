# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data

.PHONY: setup demo test lint bench

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $@

setup: $(BIN)/.installed

# The main job on the embedded default gallery: enrol a folder of people, identify a photo.
# `--gallery` keeps the demo's people out of the user's own default gallery file.
KNN := $(DATA)/faces/face_recognition/examples/knn_examples
demo: setup
	$(BIN)/faceprint enroll-dir $(KNN)/train --gallery demo-gallery.sqlite3
	$(BIN)/faceprint identify $(KNN)/test/*.jpg --top-k 2 --draw demo-out --gallery demo-gallery.sqlite3

lint: setup
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

test: lint
	$(BIN)/python -m pytest
