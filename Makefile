# plantgate: `make demo` and `make test` do all set-up on a fresh Debian machine with Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv mosquitto mosquitto-clients nodered bench-tools bench-peers demo test lint pytest bench lock clean

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

# bench.peers and bench.profile (benches, so not part of `make test`): Node-RED from the npm
# registry with the committed lock file, mosquitto_sub/mosquitto_pub, and py-spy in the venv
# (a bench tool, not a dependency of plantgate).
NODERED := bench/nodered
PY_SPY  := py-spy==0.4.3

mosquitto-clients:
	@if command -v mosquitto_sub >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing mosquitto-clients with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mosquitto-clients >/dev/null; \
	else \
		echo "mosquitto_sub is not installed; run: sudo apt-get install -y mosquitto-clients" >&2; exit 1; \
	fi

nodered: $(NODERED)/node_modules/.installed

$(NODERED)/node_modules/.installed: $(NODERED)/package.json $(NODERED)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing nodejs and npm with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	else \
		echo "Node-RED needs Node.js 18.5+ and npm; run: sudo apt-get install -y nodejs npm" >&2; exit 1; \
	fi
	@node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 18 || (a === 18 && b >= 5) ? 0 : 1)' \
		|| { echo "Node-RED 4.1 needs Node.js 18.5 or newer (this is $$(node --version))" >&2; exit 1; }
	cd $(NODERED) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

bench-tools: venv
	$(BIN)/pip install --quiet '$(PY_SPY)'

bench-peers: venv mosquitto mosquitto-clients nodered
	$(BIN)/python -m bench.peers

# Refresh the constraints file from the current venv (after changing dependencies).
lock: venv
	$(BIN)/pip freeze --exclude-editable | grep -v '^plantgate\|^py-spy' > constraints.txt

clean:
	rm -rf $(VENV) .demo data .mypy_cache .ruff_cache .pytest_cache $(NODERED)/node_modules
