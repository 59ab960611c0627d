# agentsearch: two commands do all the set-up on a fresh machine.
#   make demo   installs, then runs a real search with the embedded CPU model (no server, no GPU, no API key)
#   make test   installs, then runs the whole test suite (the same command CI runs: .ci/run)

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

export LITELLM_LOCAL_MODEL_COST_MAP = True
export MLFLOW_DISABLE_TELEMETRY = true

.PHONY: install demo test test-fast lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[dev,local]"
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

## The main job: a real, small search on the embedded CPU model, ending on the best agent against the
## baselines on held-out questions, with CIs and a paired verdict (see README for the wall time).
demo: install
	$(PY) main.py optimize --benchmark reasoning_gym:chain_sum --trials 10 --val-size 10 --test-size 30 \
		--min-batch 4 --parallel 1 --concurrency 4 --levels prompt,module --formats text \
		--baselines cot,cot_sc5 --max-calls-per-question 6 --study demo-chain-sum

test: install
	$(VENV)/bin/lint-imports --no-cache
	$(PY) -m pytest -q -p no:cacheprovider

## Everything but the tests that run the real embedded model.
test-fast: install
	$(PY) -m pytest -q -m "not llm and not venv"

lint: install
	$(PY) -m ruff check .
	$(VENV)/bin/lint-imports --no-cache

bench: install
	$(PY) bench/overhead.py
	$(PY) bench/search.py

clean:
	rm -rf $(VENV) runs .pytest_cache
