# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(PY) -m pip
# The torch build this project is tested with (the one this machine's wheel cache holds).
TORCH   := torch==2.14.1 torchvision==0.29.1 torchaudio==2.11.0
PLUGINS := $(sort $(dir $(wildcard plugins/*/pyproject.toml)))
STAMP   := $(VENV)/.fmhub-installed

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml Makefile $(wildcard plugins/*/pyproject.toml) tests/toy_plugin/pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH)
	$(PIP) install -q $(TORCH) -e '.[test,finetune,int8,image,audio,plots,serve,serve-test,export]' $(foreach p,$(PLUGINS),-e '$(p)[test]') -e tests/toy_plugin
	touch $@

setup: $(STAMP)

demo: setup
	$(PY) examples/demo.py

# pytest on TEST_WORKERS processes (pytest-xdist), whole files to a worker so that module fixtures
# are built once, in collection order (each worker runs a subsequence of the one-process order, so no
# file runs after one it never ran after before); `make test TEST_WORKERS=0` runs it in this process.
# Three workers on two cores: part of the suite waits on servers and subprocesses it started, and a
# third worker (one torch thread each) fills those waits (pytest 215 s -> 192 s on the quiet machine).
# Bytecode is written (PYTHONDONTWRITEBYTECODE, if the machine sets it, is cleared for the run):
# otherwise every worker re-does pytest's assertion rewriting and every subprocess the suite starts
# recompiles fmhub (`fmhub list` 0.43 s -> 0.05 s of CPU). The .pyc files go to __pycache__ (ignored).
TEST_WORKERS ?= 3
test: export PYTHONDONTWRITEBYTECODE =
test: setup
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# Every bench (quick mode: fewer rounds; FMHUB_BENCH_QUICK=0 for the full runs), then one table of
# each fmhub figure beside its native counterpart, from the benches' SUMMARY lines.
BENCHES := $(filter-out bench/summary.py,$(wildcard bench/*.py))
bench: setup
	@mkdir -p build && : > build/bench.log
	@for b in $(BENCHES); do echo "== $$b" | tee -a build/bench.log; \
	  FMHUB_BENCH_QUICK=$${FMHUB_BENCH_QUICK-1} bash -o pipefail -c "$(PY) $$b 2>&1 | tee -a build/bench.log" || exit 1; done
	@echo; echo "== summary"; $(PY) bench/summary.py build/bench.log

clean:
	rm -rf $(VENV) build dist .pytest_cache
