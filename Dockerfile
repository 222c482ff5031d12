# Release build of Airlock; runtime image holds only the binary and the rules.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# The release profile keeps line tables for profiling (Cargo.toml); the image needs none:
# no debug info, symbols stripped.
ENV CARGO_PROFILE_RELEASE_DEBUG=0 \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN cargo build --release --locked --bin airlock

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/airlock /usr/local/bin/airlock
COPY rules /etc/airlock/rules
# Airlock's home: the CA (certs/), the store (data/) and the agents file live here, and
# relative paths in the config resolve here, whatever the working directory.
ENV AIRLOCK_HOME=/var/lib/airlock
WORKDIR /var/lib/airlock
EXPOSE 8080 8081
ENTRYPOINT ["airlock"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--admin-listen", "0.0.0.0:8081"]
