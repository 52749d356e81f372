# syntax=docker/dockerfile:1
# iaso-probe: multi-stage build (release binary, --locked), slim Debian runtime, non-root user.
#   docker build -t iaso-probe:local .
#   docker run --rm iaso-probe:local run --once          # embedded config: simulated portals

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN_RELEASE} AS build
WORKDIR /src
# Everything the build reads: the crate, the assets it embeds (templates, dashboards, the
# default configuration), and the bench mains Cargo.toml declares (cargo parses every target,
# even for --bin; they are not built).
COPY Cargo.toml Cargo.lock ./
COPY benches ./benches
COPY src ./src
COPY config ./config
COPY kibana ./kibana
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin iaso-probe \
    && install -m 0755 target/release/iaso-probe /usr/local/bin/iaso-probe

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: TLS to the portals and to Elasticsearch; curl: healthchecks and the compose
# setup script.
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 iaso \
    && useradd --system --uid 10001 --gid iaso --home-dir /data --shell /usr/sbin/nologin iaso \
    && mkdir -p /config /data \
    && chown iaso:iaso /data
COPY --from=build /usr/local/bin/iaso-probe /usr/local/bin/iaso-probe
COPY config/default.toml config/demo.toml /config/
USER 10001:10001
# Relative paths of a configuration (default.toml's ./data/journal) land under /data.
WORKDIR /data
# /config: configuration files (mount yours read-only); /data: journal, checkpoint, logs.
VOLUME ["/config", "/data"]
ENTRYPOINT ["iaso-probe"]
CMD ["run", "--config", "/config/default.toml"]
