# Release build of Airlock; the runtime image holds only the binary (the rules catalog is
# compiled in) and runs it as an unprivileged user.
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
# Never root: a flaw in the code that reads agents' requests must not hand over the container
# that holds the CA key and the provider credentials. The directories its volumes mount are
# made here, owned by that user, so that a fresh named volume starts out owned by it too.
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/airlock --shell /usr/sbin/nologin airlock \
 && mkdir -p /var/lib/airlock /public /run/airlock-agents/example-agent \
 && chown airlock:airlock /var/lib/airlock /public /run/airlock-agents /run/airlock-agents/example-agent \
 && chmod 0700 /var/lib/airlock
USER airlock:airlock
# Airlock's home: the CA (certs/), the store (data/) and the agents file live here, and
# relative paths in the config resolve here, whatever the working directory.
ENV AIRLOCK_HOME=/var/lib/airlock
WORKDIR /var/lib/airlock
EXPOSE 8080 8081
ENTRYPOINT ["airlock"]
# The admin API (reviews, approvals) on the loopback of Airlock's own network namespace: agents
# that reach the proxy port must not reach it. That keeps agents off it only if none shares the
# namespace: never run an agent in this container, nor beside it in one Kubernetes pod (a
# sidecar shares the pod's loopback; README, "Kubernetes"). Publish it on purpose, on a network
# agents are not on, as docker-compose.yml does (--admin-listen airlock-admin:8081).
CMD ["serve", "--listen", "0.0.0.0:8080", "--admin-listen", "127.0.0.1:8081"]
