# Release build of Airlock; runtime image holds only the binary and the rules.
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin airlock

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/airlock /usr/local/bin/airlock
COPY rules /etc/airlock/rules
WORKDIR /var/lib/airlock
EXPOSE 8080 8081
ENTRYPOINT ["airlock"]
CMD ["serve", "--listen", "0.0.0.0:8080", "--admin-listen", "0.0.0.0:8081", "--ca-dir", "/var/lib/airlock/certs", "--data-dir", "/var/lib/airlock/data"]
