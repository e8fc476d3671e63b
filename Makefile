# Vigil — build, run and test. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

GO        ?= go
MODULE    := github.com/vigil-ota/vigil
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X $(MODULE)/internal/buildinfo.Version=$(VERSION)
BIN       := $(CURDIR)/bin
TOOLS_BIN := $(CURDIR)/.tools/bin
REPORT    := $(CURDIR)/var/test-report.json

# Pinned tool versions (see ../shared/notes/go-tuf-v2.md).
VERSITYGW_VERSION := v1.8.0
GOTESTSUM_VERSION := v1.13.0

# Tests use the local PostgreSQL when it runs; without it they skip loudly.
VIGIL_TEST_POSTGRES_DSN ?= postgres://postgres@127.0.0.1:5432/test?sslmode=disable
export VIGIL_TEST_POSTGRES_DSN
export VIGIL_VERSITYGW := $(TOOLS_BIN)/versitygw
export VIGIL_BIN_DIR := $(BIN)

# Whole-suite limit: keep `make test` under 15 minutes on 2 cores.
TEST_TIMEOUT := 14m

# Fuzz targets, PACKAGE:TARGET; `make fuzz` runs each for FUZZTIME.
FUZZ_TARGETS := \
	./internal/release:FuzzReleaseSchema \
	./server/internal/tufrepo:FuzzSubmissionVerification \
	./server/internal/fleet:FuzzDeviceRequestVerification \
	./server/internal/fleet:FuzzDeviceCSV \
	./server/internal/rollout:FuzzPlanAndWindowParsing \
	./server/internal/httpapi:FuzzRangeHeader \
	./agent/internal/slot:FuzzUnpack \
	./internal/vigilance:FuzzVersionComparison \
	./internal/vigilance/feed:FuzzFeedRecords \
	./internal/vigilance/sbom:FuzzSBOM \
	./api/evidencezip:FuzzVerify \
	./internal/delta:FuzzApply
FUZZTIME ?= 30s

.PHONY: help build run demo demo-incident docs test test-sim bench bench-scale fuzz lint tools keys-example clean console-docs

help: ## Show this list
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

build: ## Build vigil-server, vigil-agent, vigil and vigil-fleetsim into ./bin
	@mkdir -p $(BIN)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./server/cmd/vigil-server ./agent/cmd/vigil-agent ./tools/cmd/vigil ./tools/cmd/vigil-fleetsim

# The demo token for `make run`; override with VIGIL_BOOTSTRAP_TOKEN=….
DEMO_TOKEN ?= demo-token

run: build ## Run vigil-server on the embedded default (SQLite + ./var) at 127.0.0.1:8080; it makes its own online keys in ./var/keys
	VIGIL_BOOTSTRAP_TOKEN=$${VIGIL_BOOTSTRAP_TOKEN:-$(DEMO_TOKEN)} $(BIN)/vigil-server --data-dir $(CURDIR)/var --log-format console

demo: build ## The whole story on the embedded default: publish, rollout, approval, three agents (one rolls back)
	BIN=$(BIN) bash test/demo/demo.sh

demo-incident: build ## Incident response end to end: KEV finding, halt, revoke, fix, notice, timeline, disclosure, evidence (the outputs of docs/incident-response.md)
	BIN=$(BIN) bash test/demo/incident.sh

test: build tools ## Run every test (-race; unit, end-to-end, browser), then report real-service tests (PostgreSQL, S3, Chromium)
	@mkdir -p $(dir $(REPORT))
	@status=0; \
	$(TOOLS_BIN)/gotestsum --format pkgname-and-test-fails --jsonfile $(REPORT) -- \
		-race -count=1 -timeout $(TEST_TIMEOUT) ./... || status=$$?; \
	$(GO) run ./test/cmd/servicereport $(if $(filter 1,$(VIGIL_REQUIRE_SERVICES)),--require) $(REPORT) || status=1; \
	exit $$status

# The simulation's limit: 10,000 devices through a rollout on each backend.
SIM_TIMEOUT := 25m

# The scale runs take most of an hour on 2 cores: not part of make test.
SCALE_TIMEOUT := 150m

bench-scale: build tools ## Scale figures (about an hour): 10k/100k/1M devices on PostgreSQL and SQLite, the fault test at 20,000 devices, check-ins as a share of a bare handler
	$(GO) test -run '^$$' -bench 'Scale' -benchtime 1x -timeout $(SCALE_TIMEOUT) ./server/internal/fleet/
	VIGIL_FAULT_DEVICES=20000 VIGIL_FAULT_RATE=2000 $(GO) test -count=1 -run TestThreeReplicasCarryARolloutThroughCrashesAndOutages -timeout $(SCALE_TIMEOUT) -v ./test/e2e/ | grep -E '^(=== RUN|--- |PASS|FAIL|ok)|scale_test.go'
	$(GO) test -run '^$$' -bench CheckInShare -benchtime 1x -timeout $(SCALE_TIMEOUT) ./test/e2e/

test-sim: tools ## The 10,000-device store-backed rollout simulation on SQLite and PostgreSQL (no -race; CI runs it after make test)
	@mkdir -p $(dir $(REPORT))
	@status=0; \
	$(TOOLS_BIN)/gotestsum --format pkgname-and-test-fails --jsonfile $(REPORT).sim -- \
		-count=1 -timeout $(SIM_TIMEOUT) -run StoreBackedSimulation ./server/internal/fleet/ || status=$$?; \
	$(GO) run ./test/cmd/servicereport $(if $(filter 1,$(VIGIL_REQUIRE_SERVICES)),--require --services postgres) $(REPORT).sim || status=1; \
	exit $$status

docs: ## Regenerate the generated parts of docs/ (the settings tables of docs/configuration.md)
	$(GO) test ./server/internal/config ./agent/internal/daemon ./tools/internal/cli -run ConfigurationDoc -count=1 -args -update-docs

bench: build tools ## Run the benchmarks but the scale ones (figures go to docs/benchmarks.md; make bench-scale for the rest)
	$(GO) test -run '^$$' -bench . -skip 'Scale' -benchmem -count=1 -timeout 30m ./...

console-docs: build tools ## Regenerate the console screenshots in docs/console/ (a real browser drives the console test)
	@mkdir -p docs/console
	VIGIL_CONSOLE_SCREENSHOTS=$(CURDIR)/docs/console $(GO) test -count=1 -run 'TestConsoleInARealBrowserOnSQLite' ./test/e2e/

# Go's fuzzer can end a short run with a bare "context deadline exceeded"
# when its time runs out while it minimizes a new interesting input (no
# crasher, nothing written to testdata/fuzz); such a run is repeated once.
# Any other failure fails at once.
fuzz: ## Run every fuzz target for FUZZTIME (default 30s); a crash is kept in testdata/fuzz as a regression test
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t##*:}; \
		echo "==> fuzz $$name ($$pkg, $(FUZZTIME))"; \
		out=$$(mktemp); \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg 2>&1 | tee $$out; status=$${PIPESTATUS[0]}; \
		if [ $$status -ne 0 ]; then \
			if grep -q 'context deadline exceeded' $$out && ! grep -q 'Failing input written' $$out; then \
				echo "==> $$name: the fuzzer's own deadline cut a minimization; running it again"; \
				$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
			else rm -f $$out; exit 1; fi; \
		fi; \
		rm -f $$out; \
	done

lint: ## gofmt check and go vet
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [ -n "$$unformatted" ]; then echo "gofmt would change:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...

tools: $(TOOLS_BIN)/versitygw $(TOOLS_BIN)/gotestsum ## Build test tools once into .tools/bin (Versity S3 gateway: ~4 min the first time)

$(TOOLS_BIN)/versitygw:
	GOBIN=$(TOOLS_BIN) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

$(TOOLS_BIN)/gotestsum:
	GOBIN=$(TOOLS_BIN) $(GO) install gotest.tools/gotestsum@$(GOTESTSUM_VERSION)

keys-example: build ## Generate the demo keys in keys-example/ (refuses to overwrite; FORCE=1 replaces)
	$(BIN)/vigil keys generate root-1 root-2 root-3 targets product-demo-pump snapshot timestamp \
		--dir keys-example $(if $(FORCE),--force)

clean: ## Remove ./bin and ./var (keeps .tools)
	rm -rf $(BIN) $(CURDIR)/var
