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

# every demo mode x 3 seeds with significance, from each HuBERT stand-in (3 modes x 2 stand-ins:
# 50 min measured; all 8 modes x 2 stand-ins about 2 h 10 min, estimated)
study: install
	bash scripts/demo_study.sh

clean:
	rm -rf $(VENV) build *.egg-info demo_work
