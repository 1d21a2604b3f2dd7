# oneoffd — run `make help` for the targets.

GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT      ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
VERSION_PKG := github.com/oneoffd/oneoffd/internal/version
LDFLAGS     := -s -w -X $(VERSION_PKG).version=$(VERSION) -X $(VERSION_PKG).commit=$(COMMIT)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHTIME   ?= 20x
FUZZTIME    ?= 30s

.PHONY: help build run test test-deps lint bench fuzz clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-10s %s\n", $$1, $$2}'

build: ## Build oneoffd and oneoff into bin/
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ ./cmd/oneoffd ./cmd/oneoff

run: ## Run the daemon with its defaults against the local Docker engine
	$(GO) run ./cmd/oneoffd

test: test-deps ## Vet, then run every test with the race detector, on the real Docker engine
	$(GO) vet ./...
	ONEOFFD_E2E_RACE=1 $(GO) test -race -count=1 -timeout 25m ./...

test-deps: ## Check (and install, as root) what the tests need: busybox for the test image, plain clients, and the servers they start themselves
	@missing=""; \
	for pkg in busybox-static iproute2 netcat-openbsd openssl curl rsyslog rsyslog-gnutls docker-registry apache2-utils chromium prometheus; do \
		command -v dpkg >/dev/null && ! dpkg -s $$pkg >/dev/null 2>&1 && missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing$$missing for the tests"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
			for svc in docker-registry prometheus; do \
				case " $$missing " in *" $$svc "*) \
					(systemctl disable --now $$svc || service $$svc stop) >/dev/null 2>&1 || true;; \
				esac; \
			done; \
		else \
			echo "the tests need:$$missing (sudo apt-get install$$missing)" >&2; exit 1; \
		fi; \
	fi

lint: ## gofmt, go vet and staticcheck
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting" >&2; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

bench: test-deps ## Benchmarks: start latency next to docker run --rm (BENCHTIME=20x)
	$(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./e2e

fuzz: ## Run every fuzz target for FUZZTIME each (default 30s; e.g. make fuzz FUZZTIME=10m)
	@set -e; for file in $$(git ls-files '*_test.go' | xargs grep -l '^func Fuzz'); do \
		pkg=./$$(dirname $$file); \
		for target in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' $$file); do \
			echo "== $$pkg $$target"; \
			$(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean: ## Remove built binaries
	rm -rf bin/
