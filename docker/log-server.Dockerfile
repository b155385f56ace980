# arcane-log: the transparency log server.
# Build: docker build -f docker/log-server.Dockerfile -t arcane-log .
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p arcane-log \
    && install -D -m 0755 target/release/arcane-log /out/arcane-log

# Distroless: no shell, no package manager; runs as the unprivileged "nonroot" user (65532).
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/arcane-log /usr/local/bin/arcane-log
USER 65532:65532
EXPOSE 8740
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/arcane-log"]
CMD ["serve", "--listen", "0.0.0.0:8740", "--data-dir", "/data"]
