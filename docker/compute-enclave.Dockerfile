# Deploy-time layer over a built compute image: fixes the node's configuration (gateway address,
# log, trusted release publishers) in the image. Built on the enclave host (and identically by the
# package workflow), then turned into an EIF with `nitro-cli build-enclave`; its PCRs must equal a
# logged release, so none of these settings can change without changing the measurements.
ARG BASE_IMAGE
FROM debian:bookworm-slim AS config
ARG GATEWAY_ADDRESS
ARG ADVERTISE_ADDRESS
ARG LOG_URL
ARG LOG_KEY
ARG RELEASE_PUBLISHER
ARG VSOCK_PORT=5005
RUN test -n "$GATEWAY_ADDRESS" && test -n "$ADVERTISE_ADDRESS" && test -n "$LOG_URL" \
    && test -n "$LOG_KEY" && test -n "$RELEASE_PUBLISHER" \
    && mkdir -p /out \
    && { printf 'model = "/models/model.gguf"\n'; \
         printf 'gateway_address = "%s"\n' "$GATEWAY_ADDRESS"; \
         printf 'advertise_address = "%s"\n' "$ADVERTISE_ADDRESS"; \
         printf 'log_url = "%s"\n' "$LOG_URL"; \
         printf 'log_key = "%s"\n' "$LOG_KEY"; \
         printf 'publishers = ["%s"]\n' "$RELEASE_PUBLISHER"; \
         printf 'vsock_port = %s\n' "$VSOCK_PORT"; } > /out/compute.toml

# hadolint ignore=DL3006
FROM ${BASE_IMAGE}
COPY --from=config /out/compute.toml /etc/arcane/compute.toml
ENTRYPOINT ["/usr/local/bin/arcane-compute", "serve", "--config", "/etc/arcane/compute.toml"]
