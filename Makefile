# Targets for building, testing and running the DeploymentChannel operator.
CARGO ?= cargo
BIN := deploymentchannel-operator
IMAGE ?= deploymentchannel-operator:dev
N ?= 100 1000 10000
CHURN ?=
## The Kubernetes version (1.36 or 1.30) of the control plane that `e2e`, `bench`
## and `run` build from tests/control-plane/ when neither KUBEBUILDER_ASSETS nor
## USE_EXISTING_CLUSTER=true names one.
KUBERNETES ?= 1.36

# Sets KUBEBUILDER_ASSETS to the control plane built from the pinned Go modules,
# unless a control plane was named; without Go the build script says so in one
# line and the suite then skips, saying why.
define control_plane
if [ -z "$${KUBEBUILDER_ASSETS:-}" ] && [ "$$(echo "$${USE_EXISTING_CLUSTER:-}" | tr A-Z a-z)" != true ]; then \
  if assets=$$(tests/control-plane/build $(KUBERNETES)); then export KUBEBUILDER_ASSETS="$$assets"; \
  else status=$$?; [ $$status -eq 3 ] || exit $$status; fi; \
fi;
endef

.PHONY: all build test lint fmt crds install install-crds run e2e bench image control-plane

all: lint test

build:
	$(CARGO) build --release --bin $(BIN)

## Every offline test: unit, property, mocked-API, CRD drift and alert rule tests (needs promtool).
test:
	$(CARGO) test --all-targets

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets --all-features -- -D warnings

fmt:
	$(CARGO) fmt --all

## Regenerate crds/ from the Rust types.
crds:
	$(CARGO) run --quiet --bin $(BIN) -- crd --dir crds

## Install deploymentchannel-operator and the kubectl plugin (kubectl-interactions) into ~/.cargo/bin.
install:
	$(CARGO) install --locked --path .

## Install the CRDs into the current kube context.
install-crds:
	kubectl apply --server-side -k crds/

## Install the CRDs and run the operator against the current kube context, or,
## when none is reachable, a throwaway local control plane (KUBEBUILDER_ASSETS,
## else the one built from tests/control-plane/) (/metrics in plain HTTP without
## authentication: for a workstation only).
run:
	KUBERNETES=$(KUBERNETES) $(CARGO) run --quiet --bin $(BIN) -- dev --insecure-metrics

## Build the test control plane of Kubernetes $(KUBERNETES) from tests/control-plane/ and print its directory.
control-plane:
	@tests/control-plane/build $(KUBERNETES)

## End-to-end tests against a real control plane: KUBEBUILDER_ASSETS, USE_EXISTING_CLUSTER=true,
## or else the one built from tests/control-plane/ (`make e2e KUBERNETES=1.30` for the oldest supported).
e2e:
	@$(control_plane) $(CARGO) test --features e2e --test e2e -- --test-threads=2

## Benchmark against a real control plane: `make bench` for every size, `make bench N=1000` for one;
## `make bench N=1000 CHURN=5` creates and deletes N channels five times instead;
## `make bench N=10000 FAULTS=1` measures steady-state faults (API server restart, watches cut, lists refused);
## `make bench N=10000 FAILOVER=1` kills the leader of two replicas once N converged and times the takeover.
bench:
	$(CARGO) build --release --bin $(BIN)
	@$(control_plane) $(CARGO) run --release --features e2e --example bench -- $(if $(CHURN),--churn $(CHURN)) $(if $(FAULTS),--faults) $(if $(FAILOVER),--failover) $(N)

image:
	docker build -t $(IMAGE) .
