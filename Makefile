# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= dev

.PHONY: demo test lint bench clean

$(VENV)/.installed-$(EXTRAS): pyproject.toml tools/install_torch.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	tools/install_torch.sh $(PY)
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

demo: $(VENV)/.installed-$(EXTRAS)
	$(VENV)/bin/reglab compare

test: $(VENV)/.installed-$(EXTRAS)
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

bench: $(VENV)/.installed-$(EXTRAS)
	$(PY) -m bench.single --device cpu --dataset mnist-5k  # data every installation has
	$(PY) -m bench.study --device cpu

clean:
	rm -rf $(VENV) build dist src/*.egg-info
