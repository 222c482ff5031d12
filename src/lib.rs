//! Airlock: a forward HTTPS interception proxy that passes reversible API calls through and holds
//! irreversible ones until a human approves. See `docs/request-flow.md` for one request's path.
//!
//! Layers, top to bottom. A module uses only modules in layers below its own, or beside it in
//! its own layer without a cycle (`tests/layering.rs` fails on a `crate::` path pointing up):
//!
//! ```text
//!   main (src/main.rs, src/bin)         the CLI
//!   server                              assembles a running Airlock
//!   admin   proxy   sandbox             the admin listener; the agent-facing proxy; `airlock run`
//!   gate                                the hold queue: hold, decide, execute, recover
//!   rules  credentials  audit  notify   what to hold; the real tokens; the signed log; who to tell;
//!   agents  upstream  config            agent identities; the only way out (permits); the config;
//!   directory                           agents, reviewers and shared secrets kept in the store
//!   store  tls  wire  secret_file       durable state; certificates; the shared HTTP vocabulary;
//!   file_stamp  text_pos  person        secret files; a watched file's version; file:line:column
//!   metrics  aligned_alloc  log_line    positions; people's names; the Prometheus counters; the
//!   hardening  visible  listener_owner  process's allocator; how a log line is written; process
//!   wall_clock                          hardening at start; what a terminal may show; who owns
//!                                       a loopback listener; the wall clock
//! ```

// Nothing a peer, a file or a user sent may panic the process (tests may).
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod admin;
pub mod agents;
pub mod aligned_alloc;
pub mod audit;
pub mod config;
pub mod credentials;
pub mod directory;
pub mod file_stamp;
pub mod gate;
pub mod hardening;
pub mod listener_owner;
pub mod log_line;
pub mod metrics;
pub mod notify;
pub mod person;
pub mod proxy;
pub mod rules;
#[cfg(target_os = "linux")]
pub mod sandbox;
pub mod secret_file;
pub mod server;
pub mod store;
pub mod text_pos;
pub mod tls;
pub mod upstream;
pub mod visible;
pub mod wall_clock;
pub mod wire;

/// The layers drawn above, top first: `tests/layering.rs` checks every `crate::` path against
/// them.
#[doc(hidden)]
pub const LAYERS: &[&[&str]] = &[
    &["main"],
    &["server"],
    &["admin", "proxy", "sandbox"],
    &["gate"],
    &[
        "rules",
        "credentials",
        "audit",
        "notify",
        "agents",
        "upstream",
        "config",
        "directory",
    ],
    &[
        "store",
        "tls",
        "wire",
        "secret_file",
        "file_stamp",
        "text_pos",
        "person",
        "metrics",
        "aligned_alloc",
        "log_line",
        "hardening",
        "visible",
        "listener_owner",
        "wall_clock",
    ],
];

/// Installs the process-wide rustls crypto provider (ring only). Idempotent.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
