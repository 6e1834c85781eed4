# The two commands a newcomer runs: `make demo` (the main job) and `make test`.
# Each installs what it needs into .venv first; nothing has to be installed by hand.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
MMSTD := $(VENV)/bin/mmstd
OUT ?= out
STAMP := $(VENV)/.mmstd-installed

.PHONY: demo test install clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch first, pinned: this version installs the CPU build; a bare 'torch' pulls a multi-GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[torch,keras,dev]'
	touch $(STAMP)

demo: $(STAMP)
	OUT=$(OUT) MMSTD=$(MMSTD) PY=$(PY) bash scripts/demo.sh

# pytest's exit 5 (no tests collected) is a failure here, not a pass.
test: $(STAMP)
	$(PY) -m pytest -q; rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected" >&2; exit 1; fi; exit $$rc

clean:
	rm -rf $(OUT) .pytest_cache
