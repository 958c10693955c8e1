# dyreg-edu: one entry point for set-up, tests and the book.
#   make book       create .venv, install everything, build the book into _build/html
#   make test       the whole suite: unit tests, chapters under nbval (fast mode),
#                   a warning-free book build, and a headless-browser check of it
#   make test-fast  the unit tests not marked slow (about a minute)
#   make notebooks  re-execute every chapter at full size and store its outputs
#   make student    the student edition (no solutions): _build/student/<chapter>.ipynb
#   make bench      run benchmarks/*.py
#   make clean      remove build outputs (make distclean also removes .venv)

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON    ?= python3
VENV      ?= .venv
PY        := $(VENV)/bin/python
STAMP     := $(VENV)/.dyreg-installed
REQS      := requirements.txt requirements-dev.txt
CHROMIUM  ?= /usr/bin/chromium

# Fixtures shared beside the clone (../shared/fixtures/official/); override if elsewhere.
DYREG_SHARED ?= $(abspath $(CURDIR)/..)/shared
export DYREG_SHARED

# The book build: warnings are errors, every reference must resolve, all pages re-read.
BOOK_BUILD := $(VENV)/bin/jupyter-book build . -W -n --keep-going --all
NBVAL_FLAGS := --nbval-lax --nbval-current-env --nbval-cell-timeout=600 \
               --nbval-sanitize-with tools/nbval_sanitize.cfg

.PHONY: help venv book build-book test test-fast unit nbval browser-test deps-browser \
        notebooks check-notebooks sync-colab student bench gpu-queue clean distclean

help:
	@sed -n '2,10p' Makefile | sed 's/^# //'

## ---- environment -------------------------------------------------------------

venv: $(STAMP)

# Re-installs only when a requirements file or pyproject.toml is newer than the stamp.
# The repository root goes on the venv's path through a .pth file, so `import
# dyreg_edu` / `import data_gen` work from any directory (chapters run in book/)
# and always see the working tree.
$(STAMP): $(REQS) pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --disable-pip-version-check --no-cache-dir -q -r requirements.txt -r requirements-dev.txt
	echo "$(CURDIR)" > "$$($(PY) -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/dyreg_edu_repo.pth"
	@touch $@

# Debian's Chromium for the browser check; installed only when missing.
deps-browser:
	@if [ ! -x "$(CHROMIUM)" ]; then \
	  echo "Installing Debian chromium (needed by tests/test_book.py)"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO apt-get -o DPkg::Lock::Timeout=600 update -q && \
	    DEBIAN_FRONTEND=noninteractive $$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -q chromium; \
	fi

## ---- the book ----------------------------------------------------------------

book: venv build-book
	@echo "Open _build/html/index.html"

build-book: venv
	$(BOOK_BUILD)

## ---- tests -------------------------------------------------------------------

test: venv deps-browser
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory nbval
	$(MAKE) --no-print-directory build-book
	$(MAKE) --no-print-directory browser-test
	@echo "make test: all passed"

unit: venv
	$(PY) -m pytest tests -q --ignore=tests/test_book.py

test-fast: venv
	$(PY) -m pytest tests -q --ignore=tests/test_book.py -m "not slow"

# Every notebook in book/ in fast mode. pytest exits 5 when it collects nothing
# (no chapters yet): that is not a failure.
nbval: venv
	@rc=0; DYREG_FAST=1 $(PY) -m pytest -q $(NBVAL_FLAGS) book/ || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "nbval: no chapter notebooks in book/ yet"; exit 0; fi; \
	exit $$rc

browser-test: venv
	DYREG_REQUIRE_BROWSER=1 CHROMIUM=$(CHROMIUM) $(PY) -m pytest tests/test_book.py -q

## ---- chapters ----------------------------------------------------------------

# Full-size run (not fast mode); the stored outputs are what the book shows.
notebooks: venv
	$(PY) tools/notebooks.py sync-colab
	$(PY) tools/notebooks.py execute
	$(PY) tools/notebooks.py check

sync-colab: venv
	$(PY) tools/notebooks.py sync-colab

student: venv
	$(PY) tools/notebooks.py student

check-notebooks: venv
	$(PY) tools/notebooks.py check

## ---- benchmarks --------------------------------------------------------------

bench: venv
	@shopt -s nullglob; files=(benchmarks/*.py); \
	if [ $${#files[@]} -eq 0 ]; then echo "no benchmarks yet"; exit 0; fi; \
	for f in "$${files[@]}"; do echo "== $$f"; $(PY) "$$f"; done

## ---- the GPU work queue (run it on a GPU machine; see tools/README.md) -----------

# Plain python3 there (the GPU image has torch); OUT is where the packed results go.
GPU_PY ?= python3
GPU_MINUTES ?= 8.5
gpu-queue:
	$(GPU_PY) tools/gpu_queue.py --minutes $(GPU_MINUTES) --out "$${OUT:-_build/gpu_queue}"

## ---- housekeeping ------------------------------------------------------------

clean:
	rm -rf _build .pytest_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf
	find . -path ./$(VENV) -prune -o -name .ipynb_checkpoints -type d -print0 | xargs -0 rm -rf

distclean: clean
	rm -rf $(VENV)
