//! Blind TCP tunnels for hosts that are not inspected (only when `unknown_hosts = "tunnel"`).

use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::io::{Activity, Tracked};

/// Copies bytes both ways until either side closes or nothing moves for `idle_timeout`.
pub async fn splice(agent: Upgraded, upstream: TcpStream, idle_timeout: Duration, host: String) {
    let activity = Activity::new();
    let mut agent = Tracked::new(TokioIo::new(agent), activity.clone());
    let mut upstream = upstream;
    tokio::select! {
        r = tokio::io::copy_bidirectional(&mut agent, &mut upstream) => match r {
            Ok((up, down)) => tracing::info!(target: "airlock::access", host = %host, bytes_up = up, bytes_down = down, verdict = "tunnel", "tunnel closed"),
            Err(e) => tracing::debug!(host = %host, error = %e, "tunnel ended with error"),
        },
        _ = activity.idle(idle_timeout) => tracing::info!(host = %host, "tunnel closed after idle timeout"),
    }
}
