# keygate's front door. `make dev` runs the gateway locally with an example origin
# (`make dev SCHEDULED=1` also serves wrangler's /__scheduled, to run the Cron Trigger by hand);
# `make test` runs every test. Both install what they need first (scripts/setup.sh, idempotent;
# see docs/TOOLCHAIN.md). `make check` is the fast loop while working.
.PHONY: dev test check setup build size latency bench cpu soak fuzz profile screenshots e2e unit

dev: setup
	bash scripts/dev.sh

test: setup
	bash scripts/test.sh

# Fast: seconds once built. Host toolchain only (no wasm build, no setup, no wrangler dev):
# the README layout and contract checks, formatting, native clippy, native unit tests.
check:
	PATH="$(CURDIR)/tools/node/node_modules/.bin:$$PATH" node scripts/check-layout.mjs
	PATH="$(CURDIR)/tools/node/node_modules/.bin:$$PATH" node scripts/check-contract.mjs
	cargo fmt --check
	cargo clippy -q --all-targets -- -D warnings
	cargo test -q --lib

setup:
	bash scripts/setup.sh

# One end-to-end file, or some of its cases, through wrangler dev:
#   make e2e F=keys T='roll'   tests/e2e/keys.test.mjs, the cases whose name matches /roll/
#   make e2e F=browser         the settings page in Chromium (tests/browser/)
#   make e2e                   every e2e file, one at a time
e2e: build
	bash -c '. scripts/env.sh && node --test --test-concurrency=1 --test-timeout=300000 \
	  $(if $(T),--test-name-pattern="$(T)") \
	  $(if $(filter browser,$(F)),tests/browser/*.test.mjs,$(if $(F),tests/e2e/$(F).test.mjs,tests/e2e/*.test.mjs))'

# Native unit tests of the core by name (a substring of the test path): make unit T=access::
unit:
	cargo test -q --lib $(T)

build: setup
	bash scripts/build.sh

# Release .wasm size and the gzip upload size reported by `wrangler deploy --dry-run`.
size: setup
	bash scripts/size.sh

# Local latency per stage through wrangler dev, including the Durable Object round trip.
latency: build
	bash -c '. scripts/env.sh && node bench/latency.mjs 300'

# Side by side: origin, pass-through Workers, keygate (GET, job trigger, invalid keys); about
# 7 min (14 cases x 3 runs x 8 s of load, plus warm-up and start-up). Writes BENCHMARKS.md.
bench: setup
	bash scripts/bench.sh

# Where the Worker's CPU goes under load: a V8 profile through workerd's inspector, by function.
profile: setup
	bash scripts/bench.sh --profile

# CPU per request of the gateway's own work, native and wasm.
cpu: setup
	bash scripts/cpu.sh

# Bounded soak: 60 s, 64 connections through keygate to nginx; zero 5xx and wrong answers.
soak: setup
	bash scripts/bench.sh --soak

# The long property run: 100,000 generated inputs per property (make test runs 2,000).
fuzz: setup
	PROPTEST_CASES=100000 cargo test --release --test properties

# The settings page at 1280 and 390 px wide, with demo keys and some use, through wrangler dev:
# docs/screenshots/settings-desktop.png and settings-phone.png (shown in the README).
screenshots: build
	bash -c '. scripts/env.sh && node scripts/screenshots.mjs'
