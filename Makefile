# Period Eye. Every target creates the virtual environment on first use.
VENV := .venv
PY := $(VENV)/bin/python
EXPERIMENT ?= configs/demo.yaml
DATA ?=

.PHONY: artifacts test test-fast lint types screenshots bench soak dashboard share clean

$(VENV)/.installed: requirements.txt pyproject.toml  ## the pinned environment, then Period Eye itself (editable: `periodeye`)
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

# The demo's artist-disjoint twin (one head run, ~10 s of CPU): "period from style" beside the demo's "period from painter"
DEMO_TWIN := $(if $(DATA),,$(if $(filter configs/demo.yaml,$(EXPERIMENT)),configs/demo-artists-apart.yaml))

artifacts: $(VENV)/.installed  ## train, evaluate and store every run of EXPERIMENT (default: the demo, and its artist-disjoint twin)
	$(PY) -m pipeline artifacts $(EXPERIMENT) $(if $(DATA),--data $(DATA))
	$(if $(DEMO_TWIN),$(PY) -m pipeline artifacts $(DEMO_TWIN))

test: $(VENV)/.installed  ## the whole test suite (CPU only), then its 15 slowest tests
	$(PY) -m pytest -q --durations=15

test-fast: $(VENV)/.installed  ## the inner loop (under a minute): no slow, browser or ddp tests
	$(PY) -m pytest -q -m "not slow and not browser and not ddp"

screenshots: $(VENV)/.installed  ## the README's docs/*.png: every page in the browser over real paintings (the tests' real_store, or STORE=)
	rm -rf artifacts/screenshots-docs
	$(if $(STORE),PERIODEYE_SCREENSHOT_STORE=$(abspath $(STORE))) PERIODEYE_SCREENSHOTS=$(CURDIR)/artifacts/screenshots-docs \
		$(PY) -m pytest -q -m browser tests/test_browser.py -k every_page
	cp artifacts/screenshots-docs/errors.png artifacts/screenshots-docs/inspector.png docs/

dashboard: $(VENV)/.installed  ## the dashboard on the store `make artifacts` wrote (or STORE=, PORT=): `periodeye dashboard`
	$(VENV)/bin/periodeye dashboard $(if $(STORE),--store $(STORE)) $(if $(PORT),--port $(PORT))

share: $(VENV)/.installed  ## the dashboard for colleagues on ADDRESS:PORT (default 0.0.0.0:8501), behind the passwords of .streamlit/secrets.toml or PERIODEYE_*_PASSWORD (README: Share with art historians)
	$(VENV)/bin/periodeye dashboard --share --address $(or $(ADDRESS),0.0.0.0) --port $(or $(PORT),8501) $(if $(STORE),--store $(STORE))

bench: $(VENV)/.installed  ## speed benchmarks (BENCHMARKS.md); FULL=1: GPU-sized; the dashboard one: python -m benchmarks.dashboard_scale
	$(PY) -m benchmarks $(if $(FULL),--full)

soak: $(VENV)/.installed  ## the dashboard in 3 real browsers while 2 pipeline writers run (not in CI); MINUTES=5
	$(PY) -m benchmarks.soak $(if $(MINUTES),--minutes $(MINUTES))

lint: $(VENV)/.installed  ## ruff over everything (.ci/run runs it before the tests)
	$(PY) -m ruff check .

types: $(VENV)/.installed  ## mypy over the files pyproject.toml's [tool.mypy] lists (.ci/run runs it after lint)
	$(PY) -m mypy

clean:
	rm -rf artifacts
