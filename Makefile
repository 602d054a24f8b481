# Two set-up commands: `make demo` and `make test`. Each installs what is missing, builds, then runs.
SHELL := /bin/bash
NODE_HEADERS := $(firstword $(wildcard /usr/include/node/node_api.h))
# Build the addon against the installed Node's headers (no download of headers needed).
export npm_config_nodedir := $(if $(NODE_HEADERS),/usr,)

.PHONY: all deps npm build demo test lab-kernel lab-shell bench clean

all: build

deps:
	@bash scripts/install-deps.sh

node_modules/.package-lock.json: package.json package-lock.json | deps
	@# npm 11's `npm ci` rejects a lock file that omits other platforms' optional packages
	@# (this registry serves only linux-x64 ones); `npm install` then reproduces the same tree.
	npm ci --no-audit --no-fund || npm install --no-audit --no-fund
	@touch $@

npm: node_modules/.package-lock.json

build: npm
	npm run --silent build
	$(MAKE) -s -C lab/guest

demo: build
	node dist/cli/main.js demo

# The lab tier's kernel (built once per machine, ~7 minutes; cached in ~/.cache/wlscanout-lab).
lab-kernel: deps
	@bash lab/build-kernel.sh >/dev/null

test: build lab-kernel
	npx vitest run

# Benchmarks (bench/README.md): a table on stdout, JSON in bench/results/.
bench: build
	$(MAKE) -s -C bench/ref
	npx tsc -p bench/tsconfig.json
	node --expose-gc dist-bench/bench/run.js

# An interactive shell inside the lab VM (Ctrl-A X ends QEMU).
lab-shell: build lab-kernel
	lab/boot.sh --shell

clean:
	rm -rf dist dist-examples dist-bench native/build src/wayland/protocols bench/ref/build
