# Targets for building, testing and running the DeploymentChannel operator.
CARGO ?= cargo
BIN := deploymentchannel-operator
IMAGE ?= deploymentchannel-operator:dev
N ?= 100 1000 10000
CHURN ?=

.PHONY: all build test lint fmt crds install install-crds run e2e bench image

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

## Install the CRDs and run the operator against the current kube context, or a
## throwaway local control plane from KUBEBUILDER_ASSETS when none is reachable
## (/metrics in plain HTTP without authentication: for a workstation only).
run:
	$(CARGO) run --quiet --bin $(BIN) -- dev --insecure-metrics

## End-to-end tests against a real control plane (KUBEBUILDER_ASSETS or USE_EXISTING_CLUSTER=true).
e2e:
	$(CARGO) test --features e2e --test e2e -- --test-threads=2

## Benchmark against a real control plane: `make bench` for every size, `make bench N=1000` for one;
## `make bench N=1000 CHURN=5` creates and deletes N channels five times instead.
bench:
	$(CARGO) build --release --bin $(BIN)
	$(CARGO) run --release --features e2e --example bench -- $(if $(CHURN),--churn $(CHURN)) $(N)

image:
	docker build -t $(IMAGE) .
