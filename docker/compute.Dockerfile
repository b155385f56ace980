# arcane-compute: the enclave image (input to `nitro-cli build-enclave`).
#
# Everything the enclave needs is in this image: the binary (built with the real NSM), and either
# the model file or, when the host supplies the model, only its expected digest (checked against
# the release at start). The gateway address is fixed later, at deploy time, by
# docker/compute-enclave.Dockerfile, so that the EIF measured for the release is the EIF that runs.
# No shell, no SSH, no package manager: distroless, non-root.
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
# The build targets x86-64-v3 (AVX2, FMA, F16C) by the repository's .cargo/config.toml, which COPY
# brings in: every Nitro-capable EC2 family has it, and candle's quantized kernels exist only under
# `target_feature = "avx2"`. Pinned in the source, so the EIF (and its PCRs) is reproducible; see
# BENCHMARKS.md for what it changes. RUSTFLAGS must stay unset here: it would replace that list.
RUN cargo build --release --locked -p arcane-compute --features nsm,vsock \
    && install -D -m 0755 target/release/arcane-compute /out/arcane-compute

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/arcane-compute /usr/local/bin/arcane-compute
# The model, when it ships inside the image: put it in models/ of the build context.
COPY --chown=65532:65532 models/ /models/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/arcane-compute"]
