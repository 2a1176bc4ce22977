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

# Two pytest processes, run side by side: the whole suite in one process (about 570 tests, TensorFlow with ONNX
# Runtime, OpenVINO and LiteRT loaded beside it) once died with SIGSEGV near its end, which no smaller run
# reproduced; and side by side the two keep both cores busy where one alone leaves them idle (process start-up,
# graph building, single-threaded stretches), so the suite takes less time by the clock. The second process
# prints as it goes; the first one's report follows it.
TESTS_1 := tests/benchmarks tests/caffe_converter tests/datasets tests/docs tests/evaluation tests/inference \
           tests/training tests/notebooks
# Slow tests of the second process's folders that run in the first, to even out the two (seconds on the
# 2-core Zen 4, side by side: about 170 and 250).
MOVED_TO_1 := tests/scripts/test_training_learns.py \
              tests/scripts/test_train_bn_models_learn.py::test_brief_training_beats_a_random_detector[ssd_300_resnet_v1_50]
TESTS_2 := $(filter-out $(TESTS_1) tests/__pycache__,$(patsubst %/,%,$(wildcard tests/*/)))  # all the others
TEST_TMP := .pytest_tmp
# Each process ends its report with its slowest tests: what to move between them, or to speed up.
DURATIONS := --durations=12

test: $(STAMP)
	@mkdir -p $(TEST_TMP)
	@$(PY) -m pytest $(TESTS_1) $(foreach t,$(MOVED_TO_1),'$(t)') --basetemp=$(TEST_TMP)/1 $(DURATIONS) \
		> $(TEST_TMP)/tests_1.log 2>&1 & first=$$!; \
	$(PY) -m pytest $(TESTS_2) $(foreach t,$(MOVED_TO_1),'--deselect=$(t)') --basetemp=$(TEST_TMP)/2 $(DURATIONS); \
	second=$$?; wait $$first; status=$$?; echo "== $(TESTS_1) $(MOVED_TO_1)"; cat $(TEST_TMP)/tests_1.log; \
	exit $$(( status || second ))

quickstart: $(STAMP)
	$(PY) quickstart.py

clean:
	rm -rf quickstart_out .pytest_cache $(TEST_TMP)
