# Two commands on a fresh machine: `make run` (app on the shipped model) and `make test` (the test suite).
# Both create or reuse the local virtual environment in .venv.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8501
# Listen on this machine only by default; `make run ADDRESS=0.0.0.0` serves the hospital network (put it behind
# TLS and sign-in first: see the README, "Hostile input and privacy").
ADDRESS ?= 127.0.0.1

.PHONY: setup run test test-all bench

$(VENV)/.installed: requirements.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) -m streamlit run app.py --server.address $(ADDRESS) --server.port $(PORT) --server.headless true

test: setup
	$(PY) -m pytest -q

test-all: setup
	$(PY) -m pytest -q -m "slow or not slow"

bench: setup
	$(PY) bench/train_speed.py
	$(PY) bench/intake.py
	$(PY) bench/predict_latency.py
	$(PY) bench/app_load.py
