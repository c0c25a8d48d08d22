# The README's commands. `make test` is what CI runs (.ci/run).
.PHONY: test lint unit e2e crds manifests demo bench

# Everything: formatting and lints, unit/engine/CLI tests, then the test bed
# (real control plane, Kafka, moto, Redis, NATS, Postgres, Pub/Sub) and the
# end-to-end tests against it, torn down afterwards.
test: lint unit e2e

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	@# The Pulsar connector (feature `pulsar`) compiles its protocol with protoc.
	@if command -v protoc >/dev/null; then \
	  cargo clippy -p tributary-processor --features pulsar --all-targets -- -D warnings; \
	else echo "lint: protoc not installed; the pulsar feature is not linted (apt-get install protobuf-compiler)"; fi

unit:
	cargo test -p tributary-crds -p tributary-processor -p tributary-operator

e2e:
	e2e/run.sh

# Regenerate crds/generated/streampipeline.yaml and its copies in the chart
# and deploy/base (a test fails when any of them drifts).
crds:
	cargo run -q -p tributary-crds --bin crdgen > crds/generated/streampipeline.yaml
	cp crds/generated/streampipeline.yaml charts/tributary/crds/streampipeline.yaml
	cp crds/generated/streampipeline.yaml deploy/base/crd.yaml

# Render deploy/base/operator.yaml from the chart (the test bed's helm).
HELM ?= $(shell command -v helm || echo /tmp/tributary-testbed/bin/helm)
manifests: crds
	$(HELM) template tributary charts/tributary --namespace tributary-system > deploy/base/operator.yaml

# The main job: a bundled pipeline on the built-in generator.
demo:
	cargo run --release -p tributary-processor -- run -f deploy/examples/clickstream-local.yaml

bench:
	cargo run --release -p tributary-processor -- bench
