# syntax=docker/dockerfile:1

# Build: a release binary from the locked dependency versions.
FROM rust:1-bookworm AS builder
WORKDIR /src
COPY . .
# The caches keep downloaded crates and compiled dependencies between builds;
# the binary is copied out of the cached target directory.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin deploymentchannel-operator \
    && install -D -m 0755 target/release/deploymentchannel-operator /out/deploymentchannel-operator

# Run: glibc and CA certificates only, no shell, as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=builder /out/deploymentchannel-operator /usr/local/bin/deploymentchannel-operator
USER 65532:65532
# Health probes (/healthz, /readyz) in HTTP and Prometheus metrics (/metrics) in HTTPS.
EXPOSE 8081 8443
ENTRYPOINT ["/usr/local/bin/deploymentchannel-operator"]
CMD ["run"]
