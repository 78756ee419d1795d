# fleet — see README.md. `make demo` runs fleet on a local sandbox;
# `make test` runs every test, end-to-end ones included.
SHELL     := /bin/bash
GO        ?= go
BIN       := bin/fleet
VERSION   ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
DEMO_DIR  ?= $(CURDIR)/.demo
# Packages with goroutines run under the race detector too.
RACE_PKGS := ./sshexec/... ./image/... ./node/... ./sandbox/... ./reconciler/... ./probe/... ./lb/... ./ingress/...

.PHONY: build test unit e2e race lint demo demo-down demo-images pause-image bench bench-transport bench-scale bench-failover bench-rollout bench-lb clean

build:
	$(GO) build -ldflags "-X main.version=$(VERSION)" -o $(BIN) ./cmd/fleet

# fleet-pause:1 holds the network of pods of several containers; fleet
# pushes it to the machines from the local engine like any image.
pause-image:
	./cmd/fleet-pause/build-image.sh

demo-images: pause-image
	./examples/demo/build-image.sh v1
	./examples/demo/build-image.sh v2

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /e2e)

race:
	$(GO) test -race -count=1 $(RACE_PKGS)

# End-to-end tests start their own sandbox (uniquely named) on the local
# Docker engine and remove it afterwards.
e2e: build demo-images
	$(GO) test -count=1 -timeout 30m -v ./e2e/ 2>&1 | tee /tmp/fleet-e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic)|_test.go' ; exit $${PIPESTATUS[0]}

test: lint unit race e2e

demo: build demo-images
	$(BIN) sandbox up --hosts 3 --name demo --dir $(DEMO_DIR)
	FLEET_INVENTORY=$(DEMO_DIR)/inventory.yaml FLEET_STATE=$(DEMO_DIR)/state.db $(BIN) get nodes -o wide
	FLEET_INVENTORY=$(DEMO_DIR)/inventory.yaml FLEET_STATE=$(DEMO_DIR)/state.db $(BIN) apply -f examples/web.yaml
	FLEET_INVENTORY=$(DEMO_DIR)/inventory.yaml FLEET_STATE=$(DEMO_DIR)/state.db $(BIN) get deploy,pods -o wide

demo-down:
	$(BIN) sandbox down --name demo --dir $(DEMO_DIR)

bench: bench-transport bench-scale bench-failover bench-rollout bench-lb

bench-transport: build demo-images
	$(GO) run ./bench/transport -fleet $(BIN)

clean:
	rm -rf bin

bench-scale: build demo-images
	$(GO) run ./bench/scale -fleet $(BIN)

bench-failover: build demo-images
	$(GO) run ./bench/failover -fleet $(BIN)

bench-rollout: build demo-images
	$(GO) run ./bench/rollout -fleet $(BIN)

# Installs nginx, haproxy and wrk from Debian when missing (root).
bench-lb:
	$(GO) run ./bench/lb
