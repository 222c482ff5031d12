//! Loopback ports a test must know before its listener starts (shared with
//! `tests/store_suite.rs`, which includes this file on its own).

/// A loopback port free now, for a listener whose address a test must know before it starts.
/// Drawn outside the kernel's ephemeral range (`ip_local_port_range`, where every `:0` bind of
/// the tests running beside this one lands), and never the same twice in one test binary, so no
/// other listener takes it between this check and its bind.
pub fn spare_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let (low, high) = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            let mut it = r.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999));
    // Below the range if there is room there, else above it.
    let (from, to) = if low > 11_024 {
        (low - 10_000, low)
    } else {
        (high.saturating_add(1), u16::MAX)
    };
    assert!(
        from < to,
        "no port outside the ephemeral range {low}-{high}"
    );
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = from + rand::random::<u16>() % (to - from);
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no spare port in {from}-{to}");
}
