# meshdrift: make targets are the interface; hack/ holds the scripts they call.
SHELL := /usr/bin/env bash
GO ?= go
export GOTOOLCHAIN := local

MESHDRIFT_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/meshdrift
MESHDRIFT_TESTBED ?= $(MESHDRIFT_CACHE)/testbed
export MESHDRIFT_CACHE MESHDRIFT_TESTBED

VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/meshdrift/meshdrift/internal/buildinfo.Version=$(VERSION)

.PHONY: all build test unit integration conformance testbed packages tools crds lint bench demo e2e clean

all: build

build: ## Build bin/meshdrift.
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/meshdrift ./cmd/meshdrift

testbed: packages tools crds ## Install and build every real program the tests run (cached).

packages:
	hack/install-packages.sh

tools:
	hack/build-tools.sh

crds: tools
	hack/crds.sh

# The README's test command: the real test bed, then unit tests, then integration tests.
test: testbed unit integration conformance

unit: ## Fast tests; integration tests skip under -short.
	$(GO) test -short -count=1 ./...

# Integration tests start real kube-apiserver, istiod, Flux and Alertmanager; one package at
# a time keeps timing assertions honest on small machines. MESHDRIFT_REQUIRE_TESTBED makes a
# missing part fail instead of skip.
integration:
	MESHDRIFT_REQUIRE_TESTBED=1 $(GO) test -race -count=1 -p 1 -timeout 30m ./...

conformance: ## Argo CD upstream types -> meshdrift's view (separate module, see hack/tools/argocd).
	cd hack/tools/argocd && $(GO) test -count=1 ./...

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi

STATICCHECK_VERSION ?= v0.8.2

bench: ## Go benchmarks and the scale harness on the real bed; one table (see BENCHMARKS.md).
	GO=$(GO) hack/bench.sh

demo: testbed build ## Bring up the local bed with a sample mesh and run meshdrift serve on it.
	$(GO) build -o bin/meshdrift-demo ./hack/demo
	bin/meshdrift-demo --meshdrift=bin/meshdrift

e2e: testbed build
	MESHDRIFT_REQUIRE_TESTBED=1 MESHDRIFT_BINARY=$(CURDIR)/bin/meshdrift $(GO) test -count=1 -p 1 ./hack/demo/...

clean:
	rm -rf bin
