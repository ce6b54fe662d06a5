# plantgate: `make demo` and `make test` do all set-up on a fresh Debian machine with Python 3.11+.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: venv mosquitto node node-deps cluster-deps proto schema demo test lint pytest bench lock \
	clean mosquitto-clients nodered bench-tools bench-peers

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

# node >= 20 for the tests' node packages: Debian's nodejs and npm with apt-get when node is
# missing (root only, like mosquitto); a machine whose node is older is told so.
node:
	@if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing nodejs and npm with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	else \
		echo "node is not installed; run: sudo apt-get install -y nodejs npm" >&2; exit 1; \
	fi
	@node -e 'if (+process.versions.node.split(".")[0] < 20) { console.error("the tests need node 20 or newer, found " + process.version); process.exit(1) }'

# Eclipse Tahu's JavaScript Sparkplug codec, the tests' independent decoder, exactly as
# tests/sparkplug_js/package-lock.json pins it.
NODE_DEPS  := tests/sparkplug_js/node_modules/.installed

node-deps: node $(NODE_DEPS)

$(NODE_DEPS): tests/sparkplug_js/package.json tests/sparkplug_js/package-lock.json
	cd tests/sparkplug_js && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
	@touch $@

# Regenerate the Sparkplug protobuf module after editing its schema (a test checks it is current).
proto: venv
	cd gateway/sparkplug && ../../$(BIN)/python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. sparkplug_b.proto

# Regenerate the tag map's JSON Schema after changing a config model (a test checks it is
# current); config.yaml's first line points editors (VS Code's YAML extension) at it.
schema: venv
	$(BIN)/python -m gateway schema > plantgate.schema.json.tmp
	mv plantgate.schema.json.tmp plantgate.schema.json

# The aedes cluster of the failover tests (simulators/cluster): redis-server from Debian's
# packages (Debian 12 ships 7.0.15) and the node packages pinned by
# simulators/cluster/package-lock.json (npm ci).
CLUSTER := simulators/cluster

cluster-deps: node $(CLUSTER)/node_modules/.package-lock.json
	@if command -v redis-server >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		echo "installing redis-server with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; \
	else \
		echo "redis-server is not installed; run: sudo apt-get install -y redis-server" >&2; exit 1; \
	fi

$(CLUSTER)/node_modules/.package-lock.json: $(CLUSTER)/package.json $(CLUSTER)/package-lock.json
	cd $(CLUSTER) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

demo: venv mosquitto
	$(BIN)/python -m simulators.demo

# The whole suite: lint, types, then every test (unit, integration against the simulators and
# a real mosquitto, and the slow fault tests).
test: venv mosquitto node-deps cluster-deps lint pytest

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

pytest: venv mosquitto node-deps cluster-deps
	$(BIN)/pytest

# The end-to-end figures; the other benches are listed in README.md (python -m bench.<name>).
bench: venv mosquitto mosquitto-clients
	$(BIN)/python -m bench.pipeline

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

nodered: node $(NODERED)/node_modules/.installed

$(NODERED)/node_modules/.installed: $(NODERED)/package.json $(NODERED)/package-lock.json
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
	rm -rf $(VENV) .demo data .mypy_cache .ruff_cache .pytest_cache
	rm -rf $(CLUSTER)/node_modules tests/sparkplug_js/node_modules $(NODERED)/node_modules
