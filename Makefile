# The synchronizer. `make run` starts it on the embedded default config;
# `make test` installs what the tests need (as root, with apt) and runs them.
GO      ?= go
BIN     := bin/synchronizer
PKGS    := ./...
MODULE  := github.com/openstack-synchronizer/synchronizer
# Packages besides e2e whose tests use the real test cloud (make test).
CLOUDPKGS := openstack/testcloud openstack/e2etest
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -X github.com/openstack-synchronizer/synchronizer/buildinfo.Version=$(VERSION)

.PHONY: build run test test-deps testcloud-start testcloud-stop bench lint clean deb

build:
	$(GO) build -buildvcs=auto -ldflags "$(LDFLAGS)" -o $(BIN) .

# The synchronizer and python3-vitrage-synchronizer .debs, into $(DEBDIR),
# with dpkg-deb from what is installed (packaging/build-deb.sh).
DEBDIR ?= dist
deb:
	bash packaging/build-deb.sh $(DEBDIR) $(VERSION)

run: build
	./$(BIN) serve

# Every script in scripts/deps.d installs (apt) and starts what a part of
# the test suite needs; they are idempotent and fast when all is there.
test-deps:
	@for s in scripts/deps.d/*.sh; do echo "== $$s"; bash "$$s" || exit 1; done

test: test-deps build deb
	$(GO) vet $(PKGS)
	@$(GO) mod tidy -diff >/dev/null || { echo "go.mod is not tidy: run go mod tidy"; $(GO) mod tidy -diff; exit 1; }
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	# The real OpenStack test cloud (scripts/testcloud) for the tests that
	# poll it: started here so that a cloud that cannot start fails early,
	# stopped at the end whatever the tests did.
	scripts/testcloud/testcloud start
	# Packages run side by side: the broker tests drop connections only in
	# a virtual host of their own or restart a RabbitMQ node of their own.
	# The other packages that use the test cloud run after the rest:
	# e2e's TestRealCloudFleet stops nova-api for a while. e2e/deb_test.go
	# installs the .debs `make deb` has just built.
	@rc=0; SYNCHRONIZER_DEB_DIR=$(abspath $(DEBDIR)) $(GO) test -race -count=1 -timeout 30m \
	    $$($(GO) list $(PKGS) | grep -v -x -F $(addprefix -e $(MODULE)/,$(CLOUDPKGS))) || rc=$$?; \
	  $(GO) test -race -count=1 -timeout 30m $(addprefix ./,$(CLOUDPKGS)) || rc=$$?; \
	  scripts/testcloud/testcloud stop || true; exit $$rc

# The test cloud by hand (openstack/README.md, "The real test cloud").
testcloud-start:
	bash scripts/deps.d/openstack.sh && bash scripts/deps.d/rabbitmq.sh && scripts/testcloud/testcloud start
testcloud-stop:
	scripts/testcloud/testcloud stop

# Go benchmarks plus the load tool; figures go into the issue notes.
bench: build
	SYNC_BENCH_N=1000000 $(GO) test -run '^$$' -bench UnchangedSnapshot -benchtime 2x -timeout 60m ./engine
	SYNC_BENCH_N=100000 $(GO) test -run '^$$' -bench ApplyNew -benchtime 1x -timeout 60m ./engine
	$(GO) test -run '^$$' -bench 'Hash|Encode' -benchtime 20000x ./engine
	$(GO) test -run '^$$' -bench . -benchtime 5x ./rpc
	$(GO) test -run '^$$' -bench 1M -benchtime 2x -timeout 60m ./store
	$(GO) run ./cmd/loadtest
	bash scripts/deps.d/rabbitmq.sh
	$(GO) test -run '^$$' -bench BenchmarkBus -benchtime 20000x ./e2e
	$(GO) test -run '^$$' -bench BenchmarkStreamReplicaStart -benchtime 1x ./e2e
	SYNC_BENCH_N=50000 $(GO) test -run '^$$' -bench Stream -benchtime 1x -timeout 10m ./publishers
	SYNC_SIZING=1 $(GO) test -run TestSizingFigures -v -timeout 40m ./e2e
	# The real test cloud's figures (openstack/README.md): delta poll bytes, stop-to-subscriber time, Vitrage side by side with stock Vitrage.
	scripts/testcloud/testcloud start
	SYNC_REALCLOUD_FIGURES=1 $(GO) test -count=1 -run 'TestRealCloud(Vitrage)?Figures' -v -timeout 40m ./e2e

lint:
	$(GO) vet $(PKGS)
	$(GO) mod tidy -diff
	@test -z "$$(gofmt -l .)" || { gofmt -l .; exit 1; }

clean:
	rm -rf bin var dist
