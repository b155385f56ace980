# Deploy-time layer over a built compute image: fixes the gateway (router) address in the image's
# configuration. Built on the enclave host (and identically by the package workflow), then turned
# into an EIF with `nitro-cli build-enclave`; its PCRs must equal a logged release.
ARG BASE_IMAGE
FROM debian:bookworm-slim AS config
ARG GATEWAY_ADDRESS
RUN test -n "$GATEWAY_ADDRESS" \
    && mkdir -p /out \
    && printf 'gateway_address = "%s"\n' "$GATEWAY_ADDRESS" > /out/compute.toml

# hadolint ignore=DL3006
FROM ${BASE_IMAGE}
COPY --from=config /out/compute.toml /etc/arcane/compute.toml
