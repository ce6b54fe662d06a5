# plantgate: `make demo` and `make test` do all set-up on a fresh Debian machine with Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv mosquitto node-deps proto demo test lint pytest bench lock clean

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

# Eclipse Tahu's JavaScript Sparkplug codec, the tests' independent decoder: node and npm
# from Debian when missing (pinned; root only, like mosquitto), then the npm packages exactly
# as tests/sparkplug_js/package-lock.json pins them.
NODEJS_DEB ?= 18.20.4+dfsg-1~deb12u*
NPM_DEB    ?= 9.2.0~ds1-1
NODE_DEPS  := tests/sparkplug_js/node_modules/.installed

node-deps: $(NODE_DEPS)

$(NODE_DEPS): tests/sparkplug_js/package.json tests/sparkplug_js/package-lock.json
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing nodejs and npm with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			"nodejs=$(NODEJS_DEB)" "npm=$(NPM_DEB)" >/dev/null; \
	else \
		echo "node is not installed; run: sudo apt-get install -y nodejs npm" >&2; exit 1; \
	fi
	cd tests/sparkplug_js && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# Regenerate the Sparkplug protobuf module after editing its schema (a test checks it is current).
proto: venv
	cd gateway/sparkplug && ../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. sparkplug_b.proto

demo: venv mosquitto
	$(BIN)/python -m simulators.demo

# The whole suite: lint, types, then every test (unit, integration against the simulators and
# a real mosquitto, and the slow fault tests).
test: venv mosquitto lint pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: venv mosquitto node-deps
	$(BIN)/pytest

bench: venv mosquitto
	$(BIN)/python -m bench

# Refresh the constraints file from the current venv (after changing dependencies).
lock: venv
	$(BIN)/pip freeze --exclude-editable | grep -v '^plantgate' > constraints.txt

clean:
	rm -rf $(VENV) .demo data .mypy_cache .ruff_cache .pytest_cache
