# Two commands on a fresh machine: `make run` (app on the shipped model) and `make test` (the test suite).
# Both create or reuse the local virtual environment in .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# Listen on this machine only by default; `make run ADDRESS=0.0.0.0` serves the hospital network (put it behind
# TLS and sign-in first: see the README, "Hostile input and privacy").
ADDRESS ?= 127.0.0.1

# Every package comes from requirements.lock: one version each, with the SHA-256 of every file pip may accept
# (--require-hashes refuses anything else). The lock is generated from the readable requirements.txt: after editing
# that, run `make lock` (pins already locked are kept; `make lock UPGRADE=1` moves all to the newest allowed).
LOCK := requirements.lock

.PHONY: setup lock run test test-all bench pacs

# The interpreter's own pip (ensurepip, no download) installs the lock; the venv is rebuilt when the lock changes.
$(VENV)/.installed: $(LOCK)
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --require-hashes -r $(LOCK)
	touch $@

setup: $(VENV)/.installed

# Python 3.11 on Linux, from the indexes pip is configured with (pip config list); pip-tools is the maintainer's tool,
# installed here only.
lock:
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet pip-tools
	$(PY) -m piptools compile --quiet --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
		--no-emit-find-links $(if $(UPGRADE),--upgrade) --output-file $(LOCK) requirements.txt

run: setup
	$(PY) -m streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT) --server.headless true

# A development PACS (Orthanc + DICOMweb, Debian's orthanc and orthanc-dicomweb) on 127.0.0.1:$(PACS_PORT),
# authentication on, storage in artifacts/pacs; prints the MEDAPP_PACS_* lines to export. Ctrl-C stops it.
PACS_PORT ?= 8042
pacs: setup
	$(PY) -m medapp pacs serve --dir artifacts/pacs --port $(PACS_PORT)

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

bench: setup
	$(PY) bench/train_speed.py
	$(PY) bench/intake.py
	$(PY) bench/predict_latency.py
	$(PY) bench/app_load.py
