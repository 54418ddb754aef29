# headgate's two everyday commands are `make demo` and `make test`.

GO ?= go
GOTEST_FLAGS ?=

.PHONY: all build test vet unit e2e demo bench fuzz peers clean

all: build

## build: the headgate binary in ./headgate
build:
	$(GO) build -trimpath -o headgate .

## test: vet, then every test: unit and integration (real Redis), fuzz seeds, and the
## end-to-end suite against real Dex and Headscale binaries
test: vet
	$(GO) test -count=1 -timeout 45m $(GOTEST_FLAGS) ./...

vet:
	$(GO) vet ./...

## unit: the tests outside e2e, with the race detector
unit:
	$(GO) test -race -count=1 $(GOTEST_FLAGS) $$($(GO) list ./... | grep -v /e2e)

## e2e: the end-to-end suite alone
e2e:
	$(GO) test -count=1 -timeout 45m -v $(GOTEST_FLAGS) ./e2e/...

## demo: Dex, Headscale, an echo upstream and headgate on 127.0.0.1 (in-process store)
demo:
	$(GO) run ./e2e/demo

## peers: build the Dex and Headscale binaries the e2e suite and the demo use
peers:
	cd e2e/tools && $(GO) build -o ../.bin/headscale github.com/juanfont/headscale/cmd/headscale
	cd e2e/tools && $(GO) build -o ../.bin/dex github.com/dexidp/dex/cmd/dex

clean:
	rm -rf headgate e2e/.bin
