# The two set-up commands of the README.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test demo study clean
install:
	@bash scripts/install.sh

test: install
	$(PY) -m pytest -q tests

demo: install
	bash scripts/demo.sh

# dense, attention top-k, local, fold and ctc x 2 seeds, each trained until dev BLEU stops rising,
# on the built-in corpus at the study's size (docs/results.md: its measured time)
study: install
	bash scripts/demo_study.sh

clean:
	rm -rf $(VENV) build *.egg-info demo_work
