# syntax=docker/dockerfile:1
# One build, two images:  docker build --target api .  /  docker build --target worker .
# Queries are checked at run time against the migrated schema, so the build needs no database.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
ENV CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin artsvao-api --bin artsvao-worker \
    && cp target/release/artsvao-api target/release/artsvao-worker /usr/local/bin/

FROM debian:bookworm-slim AS runtime
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates wget \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 artsvao
USER artsvao
ENV LOG_FORMAT=json

FROM runtime AS api
COPY --from=build /usr/local/bin/artsvao-api /usr/local/bin/artsvao-api
ENV API_ADDR=0.0.0.0:8080 METRICS_ADDR=0.0.0.0:9100
EXPOSE 8080 9100
ENTRYPOINT ["artsvao-api"]

FROM runtime AS worker
COPY --from=build /usr/local/bin/artsvao-worker /usr/local/bin/artsvao-worker
ENV WORKER_ADDR=0.0.0.0:9090
EXPOSE 9090
ENTRYPOINT ["artsvao-worker"]
