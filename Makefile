# KetaBridge developer commands. `make run` starts the gateway with demo data;
# `make test` is what CI runs (after `make lint`).

GO        ?= go
BIN       ?= bin/ketabridge
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PKGS      := ./...
# Packages whose concurrency is worth the race detector on 2 cores.
RACE_PKGS ?= ./mapping/ingest/... ./store/sqlite/...
IMAGE     ?= ketabridge:$(VERSION)

.PHONY: run test race build bench bench-go lint docker clean

run:
	$(GO) run ./cmd/ketabridge serve --demo

test:
	$(GO) vet $(PKGS)
	$(GO) test -timeout 10m -count=1 $(PKGS)

race:
	$(GO) test -race -timeout 10m -count=1 $(RACE_PKGS)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/ketabridge

# bench: `ketabridge bench`: ~1M synthetic resources into SQLite
# (ingest resources/s), then six vegeta scenarios at 32 connections, 10 s each,
# with a real client_credentials token (read-hot, read-uniform, search,
# search-include, everything, and the bare net/http limit); prints the table,
# writes bench/results.json and bench/latency-*.svg, appends the dated rows to
# docs/benchmarks.md. Then `bench --compare`: the same scenarios on
# SQLite, SQLite + memory cache and, when PostgreSQL and Redis answer at
# BENCH_DATABASE_URL and BENCH_REDIS_URL (default: the local servers; the
# variants are skipped with a note when they do not), PostgreSQL and
# PostgreSQL + Redis with the read cache off and on (fresh schema and key
# prefix, dropped afterwards; bench/compare.json). Then the
# cost of token verification on a read (unauthenticated vs SMART-authorized
# read through the same handler).
BENCH_DATABASE_URL ?= postgres://127.0.0.1:5432/test?sslmode=disable
BENCH_REDIS_URL    ?= redis://127.0.0.1:6379/0
bench:
	$(GO) run ./cmd/ketabridge bench
	$(GO) run ./cmd/ketabridge bench --compare --database-url '$(BENCH_DATABASE_URL)' --redis-url '$(BENCH_REDIS_URL)'
	$(GO) test -run '^$$' -bench 'BenchmarkRead$$|BenchmarkReadSMART$$|BenchmarkVerify' -benchmem ./fhir ./auth

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 20m $(PKGS)

lint:
	@out=$$(gofmt -l .); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

docker:
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

clean:
	rm -rf bin
