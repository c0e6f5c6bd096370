# KetaBridge developer commands. `make help` lists them; `make run` starts the
# gateway with demo data; `make test` is what CI runs (after `make lint`).

GO        ?= go
BIN       ?= bin/ketabridge
BENCH_BIN ?= bin/ketabridge-bench
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PKGS      := ./...
# Packages whose concurrency is worth the race detector on 2 cores.
RACE_PKGS ?= ./mapping/ingest/... ./store/sqlite/...
IMAGE     ?= ketabridge:$(VERSION)

.PHONY: help run test race build bench bench-scale bench-go soak lint docker clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

run: ## the gateway with demo data on http://localhost:8080 (the first run compiles for minutes)
	$(GO) run ./cmd/ketabridge serve --demo

# Tests that need a service the machine lacks skip, silently without -v: say
# which, and why, before they run.
test: ## go vet and every test (PostgreSQL/Redis tests need KETABRIDGE_TEST_* set, see README)
	$(GO) vet $(PKGS)
	$(if $(KETABRIDGE_TEST_DATABASE_URL),,@echo "make test: KETABRIDGE_TEST_DATABASE_URL is unset: the PostgreSQL tests skip (README, Development)")
	$(if $(KETABRIDGE_TEST_REDIS_URL),,@echo "make test: KETABRIDGE_TEST_REDIS_URL is unset: the Redis tests skip (README, Development)")
	$(if $(wildcard conformance/fhirclient/node_modules),,@echo "make test: conformance/fhirclient/node_modules is missing: the fhirclient end-to-end test skips (npm ci there)")
	$(if $(wildcard apps/course/a11y/node_modules),,@echo "make test: apps/course/a11y/node_modules is missing: the course viewer's axe-core check skips (npm ci there)")
	$(if $(shell command -v chromium),,@echo "make test: chromium is not installed: the browser end-to-end tests skip")
	$(GO) test -timeout 20m -count=1 $(PKGS)

race: ## the race detector on the concurrent packages
	$(GO) test -race -timeout 10m -count=1 $(RACE_PKGS)

build: ## static binaries in bin/: ketabridge and ketabridge-bench
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/ketabridge
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BENCH_BIN) ./cmd/ketabridge-bench

# bench: `ketabridge-bench`: ~1M synthetic resources into SQLite
# (ingest resources/s), then the vegeta scenarios at 32 connections, 10 s each,
# with a real client_credentials token (read-hot, read-uniform, search,
# search-include, search-assessments, search-payer, everything,
# everything-default, pa-criteria on one connection, and the bare net/http
# limit), then the export
# scenario (a system Bulk Data $export of every resource, kick-off to the last
# byte downloaded: resources/s and peak RSS); prints the table,
# writes bench/results.json and bench/latency-*.svg, appends the dated rows to
# docs/benchmarks.md. Then `ketabridge-bench --compare`: the same scenarios on
# SQLite, SQLite + memory cache and, when PostgreSQL and Redis answer at
# BENCH_DATABASE_URL and BENCH_REDIS_URL (default: the local servers; the
# variants are skipped with a note when they do not), PostgreSQL and
# PostgreSQL + Redis with the read cache off and on (fresh schema and key
# prefix, dropped afterwards; bench/compare.json), the export on SQLite and
# on PostgreSQL. Then the
# cost of token verification on a read (unauthenticated vs SMART-authorized
# read through the same handler).
BENCH_DATABASE_URL ?= postgres://127.0.0.1:5432/test?sslmode=disable
BENCH_REDIS_URL    ?= redis://127.0.0.1:6379/0
bench: ## the benchmark and the store comparison (~9 minutes; docs/benchmarks.md)
	$(GO) run ./cmd/ketabridge-bench
	$(GO) run ./cmd/ketabridge-bench --compare --database-url '$(BENCH_DATABASE_URL)' --redis-url '$(BENCH_REDIS_URL)'
	$(GO) test -run '^$$' -bench 'BenchmarkRead$$|BenchmarkReadSMART$$|BenchmarkVerify' -benchmem ./fhir ./auth

# soak: `ketabridge-bench --soak`: a gateway on SQLite with the Redis read
# cache (BENCH_REDIS_URL, fresh key prefix, behind an in-process proxy that
# can hold Redis), 40 requests/s of mixed reads, searches and ingests for
# SOAK_DURATION; Redis held for 3 s every minute and a client dropping its
# connection mid-body every 5 s; errors by kind, RSS over time, every
# acknowledged record read back; appends a dated section to
# docs/benchmarks.md. Opt-in: not part of make test or CI.
SOAK_DURATION ?= 10m
soak: ## the soak test: 10 minutes of mixed load with faults injected (docs/benchmarks.md)
	$(GO) run ./cmd/ketabridge-bench --soak $(SOAK_DURATION) --redis-url '$(BENCH_REDIS_URL)'

# bench-scale: `ketabridge-bench --scale`: the cost curve. One SQLite store
# loaded in steps to each of SCALE_SIZES resources (synthetic patients in
# order, in Ingest calls of 50 patients) and measured at each: ingest
# resources/s (the step's and its last 100k's), the database's size on disk,
# read-uniform, search, everything and everything-default requests/s and
# p99 (32 connections, 10 s each, search and everything-default after an
# untimed request per patient: the steady state), peak RSS; against the targets (read and
# search p99 grow by less than 1.5x, ingest falls by less than 30 %).
# Prints its progress; writes bench/scale.json and bench/scale.svg and
# appends a dated section to docs/benchmarks.md. Opt-in: not part of make
# bench, make test or CI (~15 minutes at 10,000 resources/s ingest; the 3M
# database needs ~13 GB in $$TMPDIR).
SCALE_SIZES ?= 100k,1m,3m
bench-scale: ## the cost curve: 100k, 1M and 3M resources in one store (docs/benchmarks.md)
	$(GO) run ./cmd/ketabridge-bench --scale $(SCALE_SIZES)

bench-go: ## every Go micro-benchmark
	$(GO) test -run '^$$' -bench . -benchmem -timeout 20m $(PKGS)

lint: ## gofmt and go vet
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

docker: ## the container image
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean: ## remove bin/
	rm -rf bin
