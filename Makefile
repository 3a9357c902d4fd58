# Fresh machine: `make demo` or `make test`. Both create .venv and install jaxmoe into it.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: venv demo test bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,plot,parquet,distributed]'
	touch $(STAMP)

# = jaxmoe sweep --preset softmax-ridge --out demo_output --overwrite (7 sizes 300..20000 x 16 replicates)
demo: $(STAMP)
	$(PY) -m jaxmoe.demo --out demo_output

# one pytest worker per core; --dist loadscope keeps a module's tests (and its fixtures' fits) on one worker
TEST_WORKERS ?= auto
test: $(STAMP)
	$(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadscope tests

bench: $(STAMP)  # about 15 minutes on the 2-core CPU; experiments/speed_and_scale.md
	$(PY) experiments/bench_baselines.py

clean:
	rm -rf $(VENV) demo_output
