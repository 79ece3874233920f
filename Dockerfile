# syntax=docker/dockerfile:1
# The `button` binary in a small image. The build stage needs Node.js/npm because
# build.rs runs `npm ci` to fetch the pinned front-end assets and the geo database
# (package-lock.json) and embeds them in the binary: the runtime image needs
# neither Node.js nor any data file.
#
#   docker build -t button .
#   docker run --env-file .env -v "$PWD/certs:/app/certs:ro" -p 3000:3000 button
#   docker run --env-file .env -v "$PWD/certs:/app/certs:ro" button sink
#
# Behind a load balancer or reverse proxy, tell `serve` which peers' forwarding
# headers to believe, or every visitor gets the proxy's location:
#   docker run ... -e BUTTON_TRUSTED_PROXIES=10.0.0.0/8 button
# (or `serve --trusted-proxies CIDR,...`).

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
# nodejs/npm: build.rs's `npm ci`; libssl-dev, pkg-config: TLS for Kafka
# (librdkafka, built from source by rdkafka-sys), PostgreSQL and HTTPS.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      nodejs npm pkg-config libssl-dev zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The caches keep crates and build products between builds; the binary is copied
# out because the target cache is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
 && install -D -m 0755 target/release/button /out/button

FROM debian:${DEBIAN_RELEASE}-slim AS runtime
# libssl3: TLS; ca-certificates: the public CAs that the schema registry's and
# ClickHouse's HTTPS certificates chain to (Kafka and PostgreSQL are verified
# against the project CA in certs/ca.pem).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /app --no-create-home button \
 && install -d -o button -g button -m 0750 /app /app/data
COPY --from=build /out/button /usr/local/bin/button
USER button
WORKDIR /app
# The embedded store and generated secret (embedded mode only; with Kafka every
# instance shares BUTTON_SECRET from .env). Certificates go in /app/certs.
VOLUME ["/app/data"]
ENV BUTTON_LISTEN=0.0.0.0:3000 \
    BUTTON_LOG_FORMAT=json
EXPOSE 3000
# /healthz answers 200 while the process serves; bash's /dev/tcp makes the
# request, so the image needs no HTTP client. (`sink` serves no HTTP: run it
# with --no-healthcheck, or override this.)
HEALTHCHECK --interval=15s --timeout=3s --start-period=5s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${BUTTON_LISTEN##*:} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["button"]
CMD ["serve"]
