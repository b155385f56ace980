# arcane-gateway: OHTTP gateway, relay, token services (the binary grows with its issue).
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p arcane-gateway \
    && install -D -m 0755 target/release/arcane-gateway /out/arcane-gateway

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/arcane-gateway /usr/local/bin/arcane-gateway
USER 65532:65532
EXPOSE 8741
ENTRYPOINT ["/usr/local/bin/arcane-gateway"]
