# The two commands of the README: `make quickstart` and `make test`, both from a fresh clone.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test quickstart bench clean

venv: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Two pytest processes: the whole suite in one process (about 550 tests, TensorFlow with ONNX Runtime, OpenVINO
# and LiteRT loaded beside it) once died with SIGSEGV near its end, which no smaller run reproduced.
TESTS_1 := tests/benchmarks tests/caffe_converter tests/datasets tests/docs tests/evaluation tests/inference
TESTS_2 := $(filter-out $(TESTS_1) tests/__pycache__,$(patsubst %/,%,$(wildcard tests/*/)))  # all the others

test: $(STAMP)
	$(PY) -m pytest $(TESTS_1)
	$(PY) -m pytest $(TESTS_2)

quickstart: $(STAMP)
	$(PY) quickstart.py

clean:
	rm -rf quickstart_out .pytest_cache
