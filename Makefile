# Two commands for a new user: `make test` and `make demo`. Both create/reuse .venv.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: venv test lint demo bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first: the pinned CPU wheel; anything unpinned would pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[dev]'
	@$(MAKE) --no-print-directory syslibs
	touch $(STAMP)

venv: $(STAMP)

# open3d needs the system library libusb-1.0; install it only when the import fails.
.PHONY: syslibs
syslibs:
	@$(PY) -c "import open3d" 2>/dev/null || { \
	  echo "open3d cannot import: installing libusb-1.0-0"; \
	  SUDO=$$(command -v sudo >/dev/null && [ "$$(id -u)" != 0 ] && echo sudo); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq libusb-1.0-0 >/dev/null; \
	  $(PY) -c "import open3d"; }

lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: $(STAMP) syslibs
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(PY) -m pytest

demo: $(STAMP) syslibs
	$(PY) tools/demo.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
