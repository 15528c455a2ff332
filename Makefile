# ANB Rising Stars Showcase: `make run` and `make test` do all the set-up on a
# fresh Debian 12 machine (they install what is missing first).

SHELL := /bin/bash
.DEFAULT_GOAL := run

# Debian packages: GStreamer (build and plugins), ffprobe for the tests,
# fonts for the cards and watermark.
APT_PACKAGES := pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
	gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
	gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools ffmpeg fonts-dejavu-core

SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CARGO ?= cargo
# Where cargo puts binaries: `target`, or CARGO_TARGET_DIR when a user sets it. The scripts
# given it resolve it themselves, so a relative path works from any directory.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

# Tests also need PostgreSQL server binaries (for a throwaway cluster) and a
# Python virtual environment with moto (the S3/SQS/SES emulator), schemathesis
# (which tests the live API against its OpenAPI document) and aiosmtpd (a real
# SMTP server for the mailer's tests).
MOTO_VERSION := 5.2.5
SCHEMATHESIS_VERSION := 4.32.5
AIOSMTPD_VERSION := 1.4.6
TEST_VENV := $(TARGET_DIR)/test-venv
export ANB_MOTO_SERVER ?= $(abspath $(TEST_VENV))/bin/moto_server
export ANB_SCHEMATHESIS ?= $(abspath $(TEST_VENV))/bin/schemathesis

.PHONY: run run-scaleout build bench-web deps test-deps test-tools browser-deps package-deps deploy-tools package package-check deploy-check test check fmt clippy clean fuzz screenshots

## run: install what is missing, build in release mode what one machine needs (SQLite, files,
## the database queue, the embedded worker: no broker, AWS or Redis client), serve on
## http://127.0.0.1:8080 (Swagger UI at /docs)
RUN_FEATURES := --no-default-features --features embedded-worker
run: deps
	$(CARGO) build --release -p anb-web $(RUN_FEATURES)
	$(TARGET_DIR)/release/anb-web

## run-scaleout: the AWS shape on this machine (throwaway PostgreSQL, moto for S3 and SQS,
## 2 anb-web on :8080 and :8081, 2 anb-worker); Ctrl-C stops and removes it all
run-scaleout: deps test-deps test-tools
	$(CARGO) build --release -p anb-web -p anb-worker
	CARGO_TARGET_DIR=$(TARGET_DIR) scripts/run-scaleout.sh

## build: release build of both binaries, with every technology
build: deps
	$(CARGO) build --release -p anb-web -p anb-worker

## deps: install the Debian packages the project needs, if any is missing
deps:
	@command -v $(CARGO) >/dev/null || { echo "cargo is missing: install the Rust toolchain (rustup) first" >&2; exit 1; }
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

## test-deps: PostgreSQL server binaries (without starting a cluster), rabbitmq-server, haproxy and redis-server (without starting them) and python3-venv, if missing
test-deps: deps
	@if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ! command -v initdb >/dev/null; then \
		echo "installing PostgreSQL server binaries (no cluster is created or started)"; \
		$(SUDO) mkdir -p /etc/postgresql-common; \
		echo "create_main_cluster = false" | $(SUDO) tee /etc/postgresql-common/createcluster.conf >/dev/null; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq \
			-o Dpkg::Options::=--force-confold postgresql; \
	fi
	@if [ ! -x /usr/lib/rabbitmq/bin/rabbitmq-server ]; then \
		echo "installing rabbitmq-server (its service is neither started nor enabled: the tests start brokers of their own)"; \
		made=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && $(SUDO) chmod 755 /usr/sbin/policy-rc.d && made=1; fi; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq rabbitmq-server; status=$$?; \
		if [ -n "$$made" ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; \
		$(SUDO) systemctl disable rabbitmq-server >/dev/null 2>&1 || true; \
		exit $$status; \
	fi
	@if [ ! -x /usr/sbin/haproxy ]; then \
		echo "installing haproxy (its service is neither started nor enabled: the rolling-deploy drill and make run-scaleout start their own)"; \
		made=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && $(SUDO) chmod 755 /usr/sbin/policy-rc.d && made=1; fi; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq haproxy; status=$$?; \
		if [ -n "$$made" ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; \
		$(SUDO) systemctl disable haproxy >/dev/null 2>&1 || true; \
		exit $$status; \
	fi
	@if ! command -v redis-server >/dev/null; then \
		echo "installing redis-server (its service is neither started nor enabled: the tests start servers of their own)"; \
		made=""; if [ ! -e /usr/sbin/policy-rc.d ]; then \
			printf '#!/bin/sh\nexit 101\n' | $(SUDO) tee /usr/sbin/policy-rc.d >/dev/null && $(SUDO) chmod 755 /usr/sbin/policy-rc.d && made=1; fi; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq redis-server; status=$$?; \
		if [ -n "$$made" ]; then $(SUDO) rm -f /usr/sbin/policy-rc.d; fi; \
		$(SUDO) systemctl disable redis-server >/dev/null 2>&1 || true; \
		exit $$status; \
	fi
	@python3 -c 'import ensurepip, venv' 2>/dev/null || { \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq python3-venv; }

## test-tools: moto and schemathesis, pinned, in a virtual environment under the target directory
test-tools: test-deps $(TEST_VENV)/.installed-$(MOTO_VERSION)-$(SCHEMATHESIS_VERSION)-$(AIOSMTPD_VERSION)
$(TEST_VENV)/.installed-$(MOTO_VERSION)-$(SCHEMATHESIS_VERSION)-$(AIOSMTPD_VERSION):
	python3 -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install -q --disable-pip-version-check "moto[server]==$(MOTO_VERSION)" "schemathesis==$(SCHEMATHESIS_VERSION)" "aiosmtpd==$(AIOSMTPD_VERSION)"
	touch $@

## browser-deps: Debian's Chromium, Node.js and npm for the browser tests, if missing
browser-deps:
	@need=""; [ -x /usr/bin/chromium ] || need="$$need chromium"; \
	command -v node >/dev/null || need="$$need nodejs"; \
	command -v npm >/dev/null || need="$$need npm"; \
	if [ -n "$$need" ]; then \
		echo "installing:$$need"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$need; \
	fi

## package-deps: cargo-deb (pinned) and Debian's packaging and checking tools, if missing
CARGO_DEB_VERSION := 3.8.0
package-deps:
	@command -v cargo-deb >/dev/null || $(CARGO) install cargo-deb --locked --version $(CARGO_DEB_VERSION)
	@need=""; for tool in lintian:lintian dpkg-shlibdeps:dpkg-dev systemd-analyze:systemd shellcheck:shellcheck curl:curl; do \
		command -v $${tool%%:*} >/dev/null || need="$$need $${tool#*:}"; done; \
	if [ -n "$$need" ]; then \
		echo "installing:$$need"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$need; \
	fi

## package: the Debian package of both binaries (release build), checked, in target/debian/
package: deps package-deps
	$(CARGO) build --release -p anb-web -p anb-worker
	$(CARGO) deb -p anb-web --no-build --dbgsym -o $(TARGET_DIR)/debian/
	deploy/check-package.sh $$(ls -t $(TARGET_DIR)/debian/anb_*.deb | head -1)

## package-check: the same package built from the debug binaries, checked (part of make test)
package-check: package-deps
	rm -rf $(TARGET_DIR)/debian-check
	$(CARGO) deb -p anb-web --no-build --profile dev --fast -o $(TARGET_DIR)/debian-check/ 2>&1 | grep -v 'dev profile\|enable debug symbols' || true
	deploy/check-package.sh $(TARGET_DIR)/debian-check/anb_*.deb

## deploy-tools: cfn-lint, moto, pytest, boto3, the AWS CLI (one venv) and checkov (its own: it pins old boto3)
DEPLOY_VENV := $(TARGET_DIR)/deploy-venv
CHECKOV_VENV := $(TARGET_DIR)/checkov-venv
deploy-tools: test-deps $(DEPLOY_VENV)/.installed $(CHECKOV_VENV)/.installed
$(DEPLOY_VENV)/.installed: tests/deploy/requirements.txt
	python3 -m venv $(DEPLOY_VENV)
	$(DEPLOY_VENV)/bin/pip install -q --disable-pip-version-check -r tests/deploy/requirements.txt
	touch $@
$(CHECKOV_VENV)/.installed: tests/deploy/requirements-checkov.txt
	python3 -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --disable-pip-version-check -r tests/deploy/requirements-checkov.txt
	touch $@

## deploy-check: the AWS template linted (cfn-lint, checkov) and created in moto's CloudFormation, deploy.sh and the units (part of make test)
deploy-check: deploy-tools package-deps
	ANB_CHECKOV=$(abspath $(CHECKOV_VENV))/bin/checkov ANB_MOTO_SERVER=$(abspath $(DEPLOY_VENV))/bin/moto_server \
		$(DEPLOY_VENV)/bin/python -m pytest -q -p no:cacheprovider tests/deploy

## test: formatting, lints, the layering and unused dependencies, then every test
## (unit, in-process API, contract, end-to-end, the page in a real browser, and the web
## tier's smoke load with thresholds)
CARGO_MACHETE_VERSION := 0.9.2
test: deps test-deps test-tools browser-deps package-deps deploy-tools
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p anb-web $(RUN_FEATURES) -- -D warnings
	$(CARGO) clippy -p anb-web --no-default-features -- -D warnings
	CARGO=$(CARGO) scripts/check-layers.sh
	@command -v cargo-machete >/dev/null || $(CARGO) install cargo-machete --locked --version $(CARGO_MACHETE_VERSION)
	$(CARGO) machete
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace
	tests/browser/run.sh $(TARGET_DIR)/debug/anb-web
	bench/web/smoke.sh $(TARGET_DIR)/debug
	$(MAKE) --no-print-directory package-check deploy-check

## bench-web: the web tier's tables and plot in docs/benchmarks.md (about 40 minutes on 2 cores):
## the public pages with and without the cache, the voting-week ramp, 50 uploads of 97 MB at once
BENCH_WEB_HOLD ?= 30
bench-web: deps test-deps
	$(CARGO) build --release --bins
	python3 bench/web/run.py --db sqlite postgres --size small large --scenario rankings publiclist \
		--cache off memory redis --users 600 --hold $(BENCH_WEB_HOLD)
	python3 bench/web/run.py --db sqlite postgres --size small --scenario votingweek --users 100 300 600 1000 \
		--hold $(BENCH_WEB_HOLD) --plot
	python3 bench/web/uploads.py --uploads 50

## screenshots: the page at phone and laptop widths, into docs/screenshots (the README shows them)
screenshots: deps browser-deps
	$(CARGO) build --bins
	ANB_SCREENSHOTS=$(CURDIR)/docs/screenshots tests/browser/run.sh $(TARGET_DIR)/debug/anb-web

## fuzz: libFuzzer on the upload probe for FUZZ_SECONDS (default 300) with cargo-fuzz
## (installed if missing); RUSTC_BOOTSTRAP lets the stable toolchain take its sanitizer flags
FUZZ_SECONDS ?= 300
CARGO_FUZZ_VERSION := 0.13.2
fuzz: deps
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)
	mkdir -p fuzz/corpus/probe
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run -O probe corpus/probe seeds/probe -- \
		-max_total_time=$(FUZZ_SECONDS) -timeout=5 -rss_limit_mb=1024 -print_final_stats=1

fmt:
	$(CARGO) fmt --all

clean:
	$(CARGO) clean
