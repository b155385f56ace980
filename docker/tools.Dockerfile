# Client and operator/auditor tools: arcane (client, production build: AWS Nitro root only, no
# demo), arcane-audit, arcane-log (publish commands).
FROM rust:1.95.0-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p arcane-cli -p arcane-audit -p arcane-log \
    && install -D -m 0755 target/release/arcane /out/arcane \
    && install -D -m 0755 target/release/arcane-audit /out/arcane-audit \
    && install -D -m 0755 target/release/arcane-log /out/arcane-log

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/arcane"]
