# The two set-up commands of the README.
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install test demo clean
install:
	@bash scripts/install.sh

test: install
	$(PY) -m pytest -q tests

demo: install
	bash scripts/demo.sh

clean:
	rm -rf $(VENV) build *.egg-info demo_work
