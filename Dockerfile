# syntax=docker/dockerfile:1
# Obscura: one image, one binary (`obscura relay` / `obscura guardian`).
# Not built in this project's CI (no container engine there); see
# docs/operations.md ("Container image").
#
#   docker build -t obscura .
#   docker run -p 3000:3000 -v obscura-relay:/data obscura
#   docker run -p 7500:7500 -p 7501:7501 -v obscura-guardian:/data obscura guardian

# ---- build ------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p obscura \
 && install -D -m 0755 target/release/obscura /out/obscura

# ---- run --------------------------------------------------------------------
# glibc + CA certificates (FCM/APNs/UnifiedPush are HTTPS), nothing else:
# no shell, no package manager, runs as an unprivileged user.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/obscura /usr/local/bin/obscura
# Relay defaults for a container: listen on all interfaces, data in /data.
ENV OBSCURA_LISTEN=0.0.0.0:3000 \
    OBSCURA_MGMT_LISTEN=0.0.0.0:9090 \
    OBSCURA_DATA_DIR=/data \
    OBSCURA_GUARDIAN_LISTEN=0.0.0.0:7500 \
    OBSCURA_GUARDIAN_PEER_LISTEN=0.0.0.0:7501 \
    OBSCURA_GUARDIAN_MGMT_LISTEN=0.0.0.0:7502 \
    OBSCURA_GUARDIAN_DATA_DIR=/data \
    OBSCURA_GUARDIAN_LOG_FORMAT=json \
    OBSCURA_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 3000 9090 7500 7501 7502
USER nonroot:nonroot
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/obscura"]
CMD ["relay"]
