# plantgate: `make demo` and `make test` do all set-up on a fresh Debian machine with Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv mosquitto demo test lint pytest bench lock clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "plantgate needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	@touch $(STAMP)

# mosquitto: installed with apt-get when we are root and it is missing; otherwise say what to run.
mosquitto:
	@if command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing mosquitto with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto >/dev/null; \
	else \
		echo "mosquitto is not installed; run: sudo apt-get install -y mosquitto" >&2; exit 1; \
	fi

demo: venv mosquitto
	$(BIN)/python -m simulators.demo

# The whole suite: lint, types, then every test (unit, integration against the simulators and
# a real mosquitto, and the slow fault tests).
test: venv mosquitto lint pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: venv mosquitto
	$(BIN)/pytest

bench: venv mosquitto
	$(BIN)/python -m bench

# Refresh the constraints file from the current venv (after changing dependencies).
lock: venv
	$(BIN)/pip freeze --exclude-editable | grep -v '^plantgate' > constraints.txt

clean:
	rm -rf $(VENV) .demo data .mypy_cache .ruff_cache .pytest_cache
