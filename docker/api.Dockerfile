# syntax=docker/dockerfile:1
# Multi-stage build of artsvao-api. Queries are checked at run time against the migrated
# schema, so the build needs no database (SQLX_OFFLINE kept for compile-time queries).
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
ENV SQLX_OFFLINE=true CARGO_TERM_COLOR=never
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin artsvao-api && cp target/release/artsvao-api /artsvao-api

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates wget \
    && rm -rf /var/lib/apt/lists/* && useradd --system --uid 10001 artsvao
COPY --from=build /artsvao-api /usr/local/bin/artsvao-api
USER artsvao
ENV API_ADDR=0.0.0.0:8080 LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["artsvao-api"]
