//! Who listens on a loopback TCP address. Any local user may bind a free loopback port, so a
//! token sent to `127.0.0.1:PORT` goes to whoever holds that port: while `airlock serve` is
//! stopped, another user's process could collect the agent token (`airlock run`'s relay) or an
//! admin or reviewer token (the CLI's TCP fallback). [`check`] reads the owners of the listening
//! sockets on that address from `/proc/net/tcp` and `/proc/net/tcp6` and refuses unless each is
//! a trusted uid (root, or the owner of Airlock's store or token). Only loopback addresses are
//! checked: another host's listeners are not in this kernel's tables (use TLS and the network's
//! own protection there). Linux only: elsewhere nothing is checked.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Refuses unless every socket listening on `addr` (bound to it, or to the wildcard address of
/// either family) belongs to one of `trusted`. Non-loopback addresses pass unchecked. Call it
/// after connecting and before sending anything: the listener that took the connection is one
/// of those found (sockets sharing a port with `SO_REUSEPORT` share an owner).
pub fn check(addr: SocketAddr, trusted: &[u32], what: &str) -> Result<(), String> {
    // Elsewhere there is no /proc/net/tcp to ask (the sandbox, `airlock run`, is Linux only).
    if !addr.ip().is_loopback() || cfg!(not(target_os = "linux")) {
        return Ok(());
    }
    // One reading at a time, and a passed check holds for [`RECENT_FOR`]: the tables list every
    // socket of the host (thousands under load), and a relay or a busy client checks on every
    // connection. While the listener found stays up, no other process can take its port.
    let mut recent = RECENT.lock().unwrap_or_else(|e| e.into_inner());
    let now = std::time::Instant::now();
    recent.retain(|(_, _, at)| now.duration_since(*at) < RECENT_FOR);
    if recent.iter().any(|(a, t, _)| *a == addr && t == trusted) {
        return Ok(());
    }
    read_and_check(addr, trusted, what)?;
    recent.push((addr, trusted.to_vec(), now));
    Ok(())
}

/// How long a passed [`check`] of an address stands for the same trusted uids.
const RECENT_FOR: std::time::Duration = std::time::Duration::from_secs(1);

/// Checks passed within [`RECENT_FOR`]: address, trusted uids, when.
static RECENT: std::sync::Mutex<Vec<(SocketAddr, Vec<u32>, std::time::Instant)>> =
    std::sync::Mutex::new(Vec::new());

/// [`check`] without the recent-pass memory: reads the tables.
fn read_and_check(addr: SocketAddr, trusted: &[u32], what: &str) -> Result<(), String> {
    let mut owners = Vec::new();
    for (file, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        match std::fs::read_to_string(file) {
            Ok(text) => owners.extend(listeners(&text, v6, addr)),
            Err(e) if !v6 => {
                return Err(format!(
                    "cannot tell who listens on {addr} ({file}: {e}); the {what} was not sent"
                ))
            }
            Err(_) => {} // no IPv6 here
        }
    }
    if owners.is_empty() {
        return Err(format!(
            "no listener on {addr} visible in /proc/net/tcp: cannot tell whose it is; the {what} \
             was not sent"
        ));
    }
    if let Some(uid) = owners.iter().find(|u| !trusted.contains(u)) {
        return Err(format!(
            "{addr} is held by uid {uid}, not by Airlock's user or root (uids {trusted:?}): \
             another user's process may be listening there (is `airlock serve` running?); the \
             {what} was not sent"
        ));
    }
    Ok(())
}

/// The uids of the listening sockets (state 0A) in a `/proc/net/tcp{,6}` text that take
/// connections to `addr`: bound to its address or to a wildcard one, on its port.
fn listeners(text: &str, v6: bool, addr: SocketAddr) -> Vec<u32> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (local, state, uid) = (f.get(1)?, f.get(3)?, f.get(7)?);
            if *state != "0A" {
                return None;
            }
            let (ip, port) = local.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let ip = parse_ip(ip, v6)?;
            let takes = port == addr.port()
                && (ip == addr.ip()
                    || ip.is_unspecified()
                    || mapped(ip).is_some_and(|m| m == addr.ip()));
            takes.then(|| uid.parse().ok()).flatten()
        })
        .collect()
}

/// An address as the kernel prints it: 32-bit words in hex, each in host byte order.
fn parse_ip(hex: &str, v6: bool) -> Option<IpAddr> {
    let words = if v6 { 4 } else { 1 };
    if hex.len() != words * 8 {
        return None;
    }
    let mut bytes = Vec::with_capacity(words * 4);
    for i in 0..words {
        let w = u32::from_str_radix(hex.get(i * 8..i * 8 + 8)?, 16).ok()?;
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    Some(match <[u8; 16]>::try_from(bytes.as_slice()) {
        Ok(b) => IpAddr::V6(Ipv6Addr::from(b)),
        Err(_) => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
    })
}

/// The IPv4 address inside an IPv4-mapped IPv6 one.
fn mapped(ip: IpAddr) -> Option<IpAddr> {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    }
}

/// The trusted owners of Airlock's listeners: root, this process's effective uid, and the
/// owners of `paths` that exist (the store directory, the admin token).
pub fn trusted_uids(paths: &[&std::path::Path]) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt as _;
    // SAFETY: plain syscall.
    let mut out = vec![0, unsafe { libc::geteuid() }];
    out.extend(
        paths
            .iter()
            .filter_map(|p| std::fs::metadata(p).ok())
            .map(|m| m.uid()),
    );
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listeners_are_found_by_address_and_port() {
        let lo = u32::from_ne_bytes([127, 0, 0, 1]);
        let tcp = format!(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
             0: {lo:08X}:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 1\n\
             1: 00000000:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1001        0 2\n\
             2: {lo:08X}:1F90 {lo:08X}:D000 01 00000000:00000000 00:00000000 00000000  1002        0 3\n"
        );
        let at = |port| SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
        assert_eq!(listeners(&tcp, false, at(0x1F90)), vec![1000]);
        assert_eq!(listeners(&tcp, false, at(0x1F91)), vec![1001]);
        assert!(listeners(&tcp, false, at(0x1F92)).is_empty());
        let words: Vec<String> = [0u32, 0, 0, 1u32.to_be()]
            .iter()
            .map(|w| format!("{w:08X}"))
            .collect();
        let tcp6 = format!(
            "header\n0: {}:1F90 {}:0000 0A 0:0 0:0 0 1003 0 4\n",
            words.concat(),
            "0".repeat(32)
        );
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0x1F90);
        assert_eq!(listeners(&tcp6, true, v6), vec![1003]);
        assert!(check("10.0.0.1:1".parse().unwrap(), &[], "token").is_ok());
    }

    #[test]
    fn a_listener_of_this_process_is_found_and_judged() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // SAFETY: plain syscall.
        let me = unsafe { libc::geteuid() };
        assert!(check(addr, &[me], "token").is_ok());
        let err = check(addr, &[me.wrapping_add(1)], "token").unwrap_err();
        assert!(err.contains("not sent"), "{err}");
    }
}
