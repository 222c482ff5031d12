//! Blind TCP tunnels for hosts that are not inspected (only when `unknown_hosts = "tunnel"`).
//!
//! The dialer refuses a tunnel to an address an inspected host is reached at
//! (`inspected_host_address`, see `upstream::egress`). Blind, except for one look: the agent's
//! first flight names where it really means to go (the SNI of a TLS ClientHello, or the Host
//! and an absolute-form target of an HTTP request), and a tunnel whose first flight names a
//! decision surface (the dashboard's public hosts) or a host Airlock inspects is closed before
//! a byte of it is forwarded. A ClientHello without SNI is refused (`tunnel_without_sni`: it
//! hides its destination) unless the dialled address is in `egress.allow`, which the operator
//! allowed explicitly; so is a first flight that starts like TLS or an HTTP request but cannot
//! be read to its end (too long, too many headers, a header name Airlock's parser rejects).
//! Later requests on a plain-HTTP tunnel are not read: the guarantee there is the egress
//! guard's address check. The upstream may speak first; its bytes flow meanwhile.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::io::{Activity, Tracked};
use crate::upstream::egress::{EgressDenied, EgressGuard};

/// Most of the agent's first flight read before deciding (a ClientHello fits easily).
const FIRST_FLIGHT_MAX: usize = 16 * 1024;

/// Copies bytes both ways until both sides close, either fails, nothing moves for
/// `idle_timeout`, or `revoked` completes (its agent was removed); refuses a first flight that
/// names a decision surface or a host for which `inspected` is true, or that cannot be read.
pub async fn splice(
    agent: Upgraded,
    mut upstream: TcpStream,
    idle_timeout: Duration,
    host: String,
    guard: Arc<EgressGuard>,
    inspected: impl Fn(&str) -> bool,
    revoked: impl std::future::Future<Output = ()>,
) {
    let activity = Activity::new();
    let peer = upstream.peer_addr().ok();
    let agent = Tracked::new(TokioIo::new(agent), activity.clone());
    let (mut agent_rd, mut agent_wr) = tokio::io::split(agent);
    let (mut up_rd, mut up_wr) = upstream.split();
    let to_upstream = async {
        let first = first_flight(&mut agent_rd).await?;
        let names = match named_destinations(&first) {
            Named::Hosts(names) => names,
            // Only where the operator allowed the address itself (`egress.allow`).
            Named::NoServerName if peer.is_some_and(|p| guard.allowed_net(p.ip())) => Vec::new(),
            Named::NoServerName => {
                return Err(refused(
                    "tunnel_without_sni",
                    "a TLS ClientHello without a server name: its destination cannot be judged (allow the address in egress.allow if intended)".into(),
                ))
            }
            Named::Unreadable(why) => return Err(refused("tunnel_unreadable", why.into())),
        };
        for name in names {
            guard
                .check_host(&name)
                .map_err(|d| io::Error::new(io::ErrorKind::PermissionDenied, d))?;
            if inspected(&name) {
                return Err(refused(
                    "inspected_host_named",
                    format!(
                        "the first flight names {name}, a host Airlock inspects: CONNECT to it by \
                         that name"
                    ),
                ));
            }
        }
        up_wr.write_all(&first).await?;
        let n = tokio::io::copy(&mut agent_rd, &mut up_wr).await?;
        up_wr.shutdown().await?;
        Ok::<u64, io::Error>(first.len() as u64 + n)
    };
    let to_agent = async {
        let n = tokio::io::copy(&mut up_rd, &mut agent_wr).await?;
        agent_wr.shutdown().await?;
        Ok::<u64, io::Error>(n)
    };
    tokio::select! {
        r = async { tokio::try_join!(to_upstream, to_agent) } => match r {
            Ok((up, down)) => tracing::info!(target: "airlock::access", host = %host, bytes_up = up, bytes_down = down, verdict = "tunnel", "tunnel closed"),
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => tracing::warn!(target: "airlock::access", host = %host, code = code_of(&e), reason = %e, verdict = "deny", "tunnel closed before its first flight was forwarded"),
            Err(e) => tracing::debug!(host = %host, error = %e, "tunnel ended with error"),
        },
        _ = activity.idle(idle_timeout) => tracing::info!(host = %host, "tunnel closed after idle timeout"),
        _ = revoked => tracing::info!(target: "airlock::access", host = %host, verdict = "deny", reason = "agent_removed", "tunnel closed: its agent is no longer in force"),
    }
}

/// A refusal of a first flight, with its stable reason code.
fn refused(code: &'static str, message: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        EgressDenied { code, message },
    )
}

/// The reason code a refusal carries (`tunnel_refused` for one without).
fn code_of(e: &io::Error) -> &'static str {
    e.get_ref()
        .and_then(|r| r.downcast_ref::<EgressDenied>())
        .map_or("tunnel_refused", |d| d.code)
}

/// Longest an agent may take to finish a first flight it has started.
const FIRST_FLIGHT_TIME: Duration = Duration::from_secs(10);

/// The agent's first flight: one read, and more while it looks like an unfinished TLS
/// ClientHello or HTTP request head, up to [`FIRST_FLIGHT_MAX`]. Empty if the agent closes.
/// One that stays unfinished past [`FIRST_FLIGHT_TIME`] is refused: trickling a ClientHello
/// must not get it past the look.
async fn first_flight<R: AsyncRead + Unpin>(rd: &mut R) -> io::Result<Vec<u8>> {
    let mut buf = Vec::with_capacity(2048);
    let mut chunk = [0u8; 4096];
    let n = rd.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    let rest = async {
        while n > 0 && buf.len() < FIRST_FLIGHT_MAX && incomplete(&buf) {
            let m = rd.read(&mut chunk).await?;
            if m == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..m]);
        }
        Ok::<(), io::Error>(())
    };
    match tokio::time::timeout(FIRST_FLIGHT_TIME, rest).await {
        Ok(r) => r.map(|()| buf),
        Err(_) => Err(refused(
            "tunnel_unreadable",
            "the first flight did not finish in time; its destination cannot be read".into(),
        )),
    }
}

/// Is this the start of a TLS ClientHello or an HTTP request head that has not ended yet?
fn incomplete(buf: &[u8]) -> bool {
    if buf.first() == Some(&0x16) {
        return matches!(client_hello_sni(buf), Hello::Partial);
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    matches!(
        httparse::Request::new(&mut headers).parse(buf),
        Ok(httparse::Status::Partial)
    )
}

enum Hello {
    Partial,
    Sni(Option<String>),
    NotTls,
}

/// Reads a ClientHello with rustls' own parser (sans-IO `Acceptor`), never by hand.
fn client_hello_sni(buf: &[u8]) -> Hello {
    let mut acceptor = rustls::server::Acceptor::default();
    let mut rd = buf;
    while !rd.is_empty() {
        if acceptor.read_tls(&mut rd).is_err() {
            return Hello::NotTls;
        }
    }
    match acceptor.accept() {
        Ok(Some(accepted)) => Hello::Sni(accepted.client_hello().server_name().map(str::to_string)),
        Ok(None) => Hello::Partial,
        Err(_) => Hello::NotTls,
    }
}

/// What a first flight says about its destination.
#[derive(Debug, PartialEq)]
enum Named {
    /// These hosts (none for a protocol that is neither TLS nor HTTP).
    Hosts(Vec<String>),
    /// A ClientHello that names no server.
    NoServerName,
    /// It starts like TLS or an HTTP request but cannot be read to its end.
    Unreadable(&'static str),
}

/// The hosts a first flight asks for: a ClientHello's SNI, or an HTTP request's Host headers
/// and its absolute-form target's authority (which a server prefers to Host).
fn named_destinations(first: &[u8]) -> Named {
    if first.first() == Some(&0x16) {
        return match client_hello_sni(first) {
            Hello::Sni(Some(name)) => Named::Hosts(vec![name.to_ascii_lowercase()]),
            Hello::Sni(None) => Named::NoServerName,
            Hello::Partial => Named::Unreadable("a TLS ClientHello too long or cut short"),
            Hello::NotTls => Named::Unreadable("a first flight that starts like TLS but is not"),
        };
    }
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(first);
    // Past a method token (and its space): a server reads an HTTP request here, whatever this
    // parser makes of the rest (a double space, another version, a head cut short).
    let http = req.method.is_some();
    match parsed {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) if http => {
            return Named::Unreadable("an HTTP request head too long or cut short")
        }
        Err(
            httparse::Error::HeaderName
            | httparse::Error::HeaderValue
            | httparse::Error::TooManyHeaders,
        ) => return Named::Unreadable("an HTTP request head Airlock cannot read"),
        Err(_) if http => return Named::Unreadable("an HTTP request line Airlock cannot read"),
        Ok(httparse::Status::Partial) | Err(_) => return Named::Hosts(Vec::new()),
    }
    let host = |a: &str| {
        crate::wire::Target::parse_authority(a.trim(), 80)
            .ok()
            .map(|t| t.host)
    };
    let mut names = Vec::new();
    for h in req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
    {
        // A Host this parser cannot read (`dash.example:`) may still route a server's way.
        match std::str::from_utf8(h.value).ok().and_then(host) {
            Some(name) => names.push(name),
            None => return Named::Unreadable("a Host header Airlock cannot read"),
        }
    }
    if let Some(path) = req.path.filter(|p| !p.starts_with('/') && *p != "*") {
        let authority = path
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.authority().map(|a| a.to_string()));
        match authority.as_deref().and_then(host) {
            Some(name) => names.push(name),
            None => return Named::Unreadable("a request target Airlock cannot read"),
        }
    }
    Named::Hosts(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_destination_from_a_client_hello_or_a_host_header() {
        let hosts = |names: &[&str]| Named::Hosts(names.iter().map(|n| n.to_string()).collect());
        assert_eq!(
            named_destinations(b"GET / HTTP/1.1\r\nHost: Airlock.Example.com:8443\r\n\r\n"),
            hosts(&["airlock.example.com"])
        );
        // An absolute-form target names its host whatever Host says.
        assert_eq!(
            named_destinations(b"GET http://Dash.Example/ui HTTP/1.1\r\nHost: benign.test\r\n\r\n"),
            hosts(&["benign.test", "dash.example"])
        );
        assert!(incomplete(b"GET / HTTP/1.1\r\nHost: a"));
        assert!(!incomplete(b"SSH-2.0-OpenSSH_9\r\n"));
        assert_eq!(named_destinations(b"\x00\x01garbage"), hosts(&[]));
        assert_eq!(named_destinations(b"SSH-2.0-OpenSSH_9\r\n"), hosts(&[]));
        // Heads a server may read but Airlock's parser cannot: refused, not waved through.
        let padded = format!(
            "GET / HTTP/1.1\r\nHost: dash.example\r\n{}\r\n",
            "X-Pad: 1\r\n".repeat(64)
        );
        let long_target = format!("GET http://dash.example/{} HTTP/1.1", "a".repeat(17_000));
        for head in [
            padded.as_bytes(),
            b"GET / HTTP/1.1\r\nx@y: 1\r\nHost: dash.example\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: dash.exa",
            b"\x16\x03\x01\x00\x05garbage",
            // Review of session 18: servers read these; this parser did not, and waved them on.
            b"GET  /ui HTTP/1.1\r\nHost: dash.example\r\n\r\n",
            b"GET /ui HTTP/1.2\r\nHost: dash.example\r\n\r\n",
            b"GET /ui HTTP/1.1\r\nHost: dash.example:\r\n\r\n",
            b"GET http://dash.example:/ui HTTP/1.1\r\nHost: x.test\r\n\r\n",
            long_target.as_bytes(),
        ] {
            assert!(
                matches!(named_destinations(head), Named::Unreadable(_)),
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
        // A real ClientHello, from rustls' client.
        crate::install_crypto_provider();
        let roots = rustls::RootCertStore::empty();
        let cfg = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name =
            rustls::pki_types::ServerName::try_from("airlock.example.com").map(|n| n.to_owned());
        let Ok(name) = name else {
            panic!("server name");
        };
        let Ok(mut conn) = rustls::ClientConnection::new(Arc::new(cfg), name) else {
            panic!("client");
        };
        let mut hello = Vec::new();
        let _ = conn.write_tls(&mut hello);
        assert!(!incomplete(&hello));
        assert!(incomplete(&hello[..hello.len() / 2]));
        assert_eq!(named_destinations(&hello), hosts(&["airlock.example.com"]));
        // A ClientHello to an address carries no server name: `None` (refused unless the
        // dialled address is in egress.allow).
        let cfg = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let ip =
            rustls::pki_types::ServerName::IpAddress(std::net::IpAddr::from([192, 0, 2, 1]).into());
        let Ok(mut conn) = rustls::ClientConnection::new(Arc::new(cfg), ip) else {
            panic!("client");
        };
        let mut hello = Vec::new();
        let _ = conn.write_tls(&mut hello);
        assert_eq!(named_destinations(&hello), Named::NoServerName);
    }
}
