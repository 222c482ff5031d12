//! Egress guard: which destinations an agent may reach through Airlock. Refuses loopback,
//! private, link-local (cloud metadata), CGNAT, multicast and reserved addresses (IPv4, IPv6
//! and IPv4-embedding IPv6 forms), Airlock's own listeners and every other decision surface
//! (the host of `notify.base_url` and `admin.public_hosts`, by name and by the addresses they
//! resolve to), and ports outside the allowlist, unless the resolve override maps the host or
//! config allows the destination. A decision surface is refused whatever the override or the
//! allow list says: an agent must never reach a page that approves.
//!
//! The dialer checks every address it is about to connect to (after its single DNS lookup),
//! so a name that resolves to a forbidden address is refused and DNS cannot rebind in between.
//!
//! A blind tunnel is also refused at an address an inspected host is reached at (what its name
//! resolved to at the last refresh, or its resolve override): a provider dialled by address
//! would otherwise be talked to unjudged. Interception dials those addresses as ever.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::RwLock;

use ipnet::IpNet;

/// Why a destination was refused, in words safe to show an agent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct EgressDenied {
    /// Stable reason code (`egress_loopback`, `egress_port`, `airlock_listener`, ...).
    pub code: &'static str,
    pub message: String,
}

/// The checked egress settings plus Airlock's own listening addresses.
#[derive(Debug, Default)]
pub struct EgressGuard {
    /// Networks an operator explicitly allows (e.g. an internal API).
    pub allow_nets: Vec<IpNet>,
    /// Host names an operator explicitly allows whatever they resolve to.
    pub allow_hosts: Vec<String>,
    /// Destination ports agents may reach.
    pub ports: Vec<u16>,
    /// Airlock's own listeners, set once they are bound; never reachable through the proxy.
    own: RwLock<Vec<SocketAddr>>,
    /// Names under which reviewers decide (the dashboard's public hosts): never reachable.
    decision_hosts: RwLock<Vec<String>>,
    /// The addresses those names resolved to, with the ports they serve on.
    decision_addrs: RwLock<Vec<SocketAddr>>,
    /// Where inspected hosts are reached: an override's address (that port only), or an
    /// address a name resolved to (`None`: every port). Refused to blind tunnels only.
    inspected_addrs: RwLock<Vec<(IpAddr, Option<u16>)>>,
    /// This host's interface addresses and when they were read (for wildcard listeners).
    local: RwLock<(Option<std::time::Instant>, Vec<IpAddr>)>,
}

impl EgressGuard {
    pub fn new(allow_nets: Vec<IpNet>, allow_hosts: Vec<String>, ports: Vec<u16>) -> Self {
        Self {
            allow_nets,
            allow_hosts,
            ports,
            own: RwLock::new(Vec::new()),
            decision_hosts: RwLock::new(Vec::new()),
            decision_addrs: RwLock::new(Vec::new()),
            inspected_addrs: RwLock::new(Vec::new()),
            local: RwLock::new((None, Vec::new())),
        }
    }

    /// Records the names reviewers decide under (normalised host names) and the addresses they
    /// resolve to (refreshed by the caller); both are refused from then on.
    pub fn set_decision_surfaces(&self, hosts: &[String], addrs: &[SocketAddr]) {
        if let Ok(mut h) = self.decision_hosts.write() {
            *h = hosts.to_vec();
        }
        if let Ok(mut a) = self.decision_addrs.write() {
            *a = addrs.to_vec();
        }
    }

    /// Refuses a destination named like a decision surface (CONNECT target, absolute-form
    /// host, or the name a tunnelled TLS ClientHello or HTTP Host asks for).
    pub fn check_host(&self, host: &str) -> Result<(), EgressDenied> {
        let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
        let named = self
            .decision_hosts
            .read()
            .map(|h| h.contains(&host))
            .unwrap_or(true);
        if named {
            return Err(EgressDenied {
                code: "decision_surface",
                message: format!(
                    "{host} is where reviewers decide (notify.base_url / admin.public_hosts); it is never reachable through the proxy"
                ),
            });
        }
        Ok(())
    }

    /// Records where inspected hosts are reached (refreshed by the caller): see
    /// [`EgressGuard::check_tunnel_addr`].
    pub fn set_inspected_addrs(&self, addrs: Vec<(IpAddr, Option<u16>)>) {
        if let Ok(mut a) = self.inspected_addrs.write() {
            *a = addrs;
        }
    }

    /// Refuses a blind tunnel to an address an inspected host is reached at (by its resolve
    /// override, or what its name resolved to, on any port): the provider there would be
    /// talked to unjudged, whatever name the agent gives it.
    pub fn check_tunnel_addr(&self, host: &str, addr: SocketAddr) -> Result<(), EgressDenied> {
        let ip = canonical(addr.ip());
        let hit = self
            .inspected_addrs
            .read()
            .map(|a| {
                a.iter()
                    .any(|(i, port)| canonical(*i) == ip && port.is_none_or(|p| p == addr.port()))
            })
            .unwrap_or(true);
        if hit {
            return Err(EgressDenied {
                code: "inspected_host_address",
                message: format!(
                    "{host} is reached at {addr}, where a host Airlock inspects is served; it is not tunnelled blind (CONNECT to the inspected host by its name)"
                ),
            });
        }
        Ok(())
    }

    /// Did the operator allow this address explicitly (`egress.allow` networks)?
    pub fn allowed_net(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.allow_nets.iter().any(|n| n.contains(&ip))
    }

    /// Records the addresses Airlock listens on (called after binding).
    pub fn set_own_listeners(&self, addrs: &[SocketAddr]) {
        if let Ok(mut own) = self.own.write() {
            *own = addrs.to_vec();
        }
    }

    /// Checks the port an agent asked for (CONNECT target or absolute-form URI).
    pub fn check_port(&self, port: u16) -> Result<(), EgressDenied> {
        if self.ports.contains(&port) {
            return Ok(());
        }
        Err(EgressDenied {
            code: "egress_port",
            message: format!(
                "port {port} is not in egress.ports ({:?}); only those ports may be reached",
                self.ports
            ),
        })
    }

    /// Checks one address the dialer is about to connect to for `host`. `mapped`: the address
    /// comes from the operator's resolve override.
    pub fn check_addr(
        &self,
        host: &str,
        addr: SocketAddr,
        mapped: bool,
    ) -> Result<(), EgressDenied> {
        self.check_own(addr)?;
        self.check_host(host)?;
        self.check_decision_addr(addr)?;
        if mapped || self.allow_hosts.iter().any(|h| h == host) {
            return Ok(());
        }
        let ip = canonical(addr.ip());
        if self.allow_nets.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        match forbidden_class(ip) {
            None => Ok(()),
            Some((code, what)) => Err(EgressDenied {
                code,
                message: format!(
                    "{host} resolves to {ip}, a {what} address; agents may not reach it through Airlock (allow it in egress.allow if intended)"
                ),
            }),
        }
    }

    fn check_decision_addr(&self, addr: SocketAddr) -> Result<(), EgressDenied> {
        let ip = canonical(addr.ip());
        let hit = self
            .decision_addrs
            .read()
            .map(|d| {
                d.iter()
                    .any(|a| a.port() == addr.port() && canonical(a.ip()) == ip)
            })
            .unwrap_or(true);
        if hit {
            return Err(EgressDenied {
                code: "decision_surface",
                message: format!(
                    "{addr} serves the reviewers' dashboard (notify.base_url / admin.public_hosts); it is never reachable through the proxy"
                ),
            });
        }
        Ok(())
    }

    /// Is `ip` one of this host's interface addresses? The list is read again once a minute
    /// at most (not on every dial).
    fn is_local(&self, ip: IpAddr) -> bool {
        let fresh = |at: &Option<std::time::Instant>| {
            at.is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(60))
        };
        if let Ok(l) = self.local.read() {
            if fresh(&l.0) {
                return l.1.contains(&ip);
            }
        }
        let Some(addrs) = local_addresses() else {
            // Unreadable now: the list read last (if any) still counts; nothing is cached.
            return self.local.read().is_ok_and(|l| l.1.contains(&ip));
        };
        let hit = addrs.contains(&ip);
        if let Ok(mut l) = self.local.write() {
            *l = (Some(std::time::Instant::now()), addrs);
        }
        hit
    }

    fn check_own(&self, addr: SocketAddr) -> Result<(), EgressDenied> {
        let own = self.own.read().map(|o| o.clone()).unwrap_or_default();
        let ip = canonical(addr.ip());
        for l in own {
            if l.port() != addr.port() {
                continue;
            }
            let lip = canonical(l.ip());
            // A wildcard listener is reachable on every address of this host, public ones too.
            let same_host = ip == lip
                || ip.is_loopback()
                || ip.is_unspecified()
                || (lip.is_unspecified() && (forbidden_class(ip).is_some() || self.is_local(ip)));
            if same_host {
                return Err(EgressDenied {
                    code: "airlock_listener",
                    message: format!(
                        "{addr} is one of Airlock's own listeners; it is never reachable through the proxy"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// IPv4-mapped / IPv4-compatible / NAT64 / 6to4 addresses reduced to the IPv4 they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
    }
}

fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (deprecated compatible; not :: or ::1).
    if s[..5] == [0; 5] && (s[5] == 0xffff || (s[5] == 0 && u32::from(tail) > 1)) {
        return Some(tail);
    }
    // 64:ff9b::/96 (NAT64) and 64:ff9b:1::/48 (local-use NAT64).
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] || (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) {
        return Some(tail);
    }
    // 2002:AABB:CCDD::/48 (6to4).
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    None
}

/// The class of a forbidden address, or `None` for a globally routable one.
pub fn forbidden_class(ip: IpAddr) -> Option<(&'static str, &'static str)> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some(("egress_loopback", "loopback"))
            } else if v4.is_link_local() {
                Some(("egress_link_local", "link-local (cloud metadata)"))
            } else if v4.is_private() {
                Some(("egress_private", "private (RFC 1918)"))
            } else if a == 100 && (64..128).contains(&b) {
                Some(("egress_cgnat", "carrier-grade NAT (RFC 6598)"))
            } else if v4.is_multicast() {
                Some(("egress_multicast", "multicast"))
            } else if a == 0 || a >= 240 || v4.is_broadcast() {
                Some(("egress_reserved", "reserved or unspecified"))
            } else if (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (18..20).contains(&b))
            {
                Some(("egress_reserved", "special-purpose"))
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s0 = v6.segments()[0];
            if v6.is_loopback() {
                Some(("egress_loopback", "loopback"))
            } else if v6.is_unspecified() {
                Some(("egress_reserved", "unspecified"))
            } else if s0 & 0xffc0 == 0xfe80 {
                Some(("egress_link_local", "link-local"))
            } else if s0 & 0xfe00 == 0xfc00 || s0 & 0xffc0 == 0xfec0 {
                Some(("egress_private", "unique-local / site-local"))
            } else if v6.is_multicast() {
                Some(("egress_multicast", "multicast"))
            } else if s0 == 0 || s0 == 0x100 || (s0 == 0x2001 && v6.segments()[1] == 0xdb8) {
                Some(("egress_reserved", "reserved or documentation"))
            } else {
                None
            }
        }
    }
}

/// Reads a host the way `inet_aton` would (`127.1`, `0x7f.0.0.1`, `2130706433`, `0177.0.0.1`),
/// so alternative IPv4 spellings are checked as the address they mean.
pub fn loose_ipv4(host: &str) -> Option<Ipv4Addr> {
    if host.is_empty()
        || !host
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b'x' || b == b'X')
    {
        return None;
    }
    let parts: Vec<&str> = host.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let mut nums = Vec::with_capacity(4);
    for p in &parts {
        nums.push(parse_num(p)?);
    }
    let (last, head) = nums.split_last()?;
    let mut value: u64 = 0;
    for (i, n) in head.iter().enumerate() {
        if *n > 255 {
            return None;
        }
        value |= n << (24 - 8 * i);
    }
    let room = 32 - 8 * head.len() as u32;
    if room < 64 && *last >= (1u64 << room) {
        return None;
    }
    Some(Ipv4Addr::from((value | last) as u32))
}

fn parse_num(p: &str) -> Option<u64> {
    let v = if let Some(hex) = p.strip_prefix("0x").or_else(|| p.strip_prefix("0X")) {
        if hex.is_empty() {
            0
        } else {
            u64::from_str_radix(hex, 16).ok()?
        }
    } else if p.len() > 1 && p.starts_with('0') {
        u64::from_str_radix(&p[1..], 8).ok()?
    } else {
        p.parse::<u64>().ok()?
    };
    (v <= u32::MAX as u64).then_some(v)
}

/// The IP a host names literally (canonical or an alternative IPv4 spelling), if any.
pub fn literal_ip(host: &str) -> Option<IpAddr> {
    host.parse::<IpAddr>()
        .ok()
        .or_else(|| loose_ipv4(host).map(IpAddr::V4))
}

/// The addresses of this host's interfaces (canonical), read when a dial's port is one a
/// wildcard listener of Airlock's holds; `None` if they cannot be read.
fn local_addresses() -> Option<Vec<IpAddr>> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed below by freeifaddrs; each entry's
    // address is read only when non-null and of the family its sa_family names.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return None;
        }
        let mut cur = head;
        while !cur.is_null() {
            let a = (*cur).ifa_addr;
            if !a.is_null() {
                match i32::from((*a).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(a as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(a as *const libc::sockaddr_in6);
                        out.push(canonical(IpAddr::from(sin6.sin6_addr.s6_addr)));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard() -> EgressGuard {
        EgressGuard::new(Vec::new(), Vec::new(), vec![443, 80])
    }

    #[test]
    fn alternative_ipv4_spellings() {
        let cases = [
            ("127.0.0.1", Some("127.0.0.1")),
            ("127.1", Some("127.0.0.1")),
            ("0x7f.0.0.1", Some("127.0.0.1")),
            ("0x7f000001", Some("127.0.0.1")),
            ("2130706433", Some("127.0.0.1")),
            ("0177.0.0.1", Some("127.0.0.1")),
            ("169.254.43518", Some("169.254.169.254")),
            ("10.1", Some("10.0.0.1")),
            ("256.0.0.1", None),
            ("api.github.com", None),
            ("deadbeef", None),
            ("1.2.3.4.5", None),
        ];
        for (host, want) in cases {
            assert_eq!(
                loose_ipv4(host).map(|ip| ip.to_string()),
                want.map(String::from),
                "{host}"
            );
        }
    }

    #[test]
    fn forbidden_classes() {
        let cases: &[(&str, Option<&str>)] = &[
            ("127.0.0.1", Some("egress_loopback")),
            ("169.254.169.254", Some("egress_link_local")),
            ("10.2.3.4", Some("egress_private")),
            ("172.16.0.1", Some("egress_private")),
            ("192.168.1.1", Some("egress_private")),
            ("100.64.0.1", Some("egress_cgnat")),
            ("224.0.0.1", Some("egress_multicast")),
            ("0.0.0.0", Some("egress_reserved")),
            ("255.255.255.255", Some("egress_reserved")),
            ("::1", Some("egress_loopback")),
            ("fe80::1", Some("egress_link_local")),
            ("fd00::1", Some("egress_private")),
            ("ff02::1", Some("egress_multicast")),
            ("::ffff:127.0.0.1", Some("egress_loopback")),
            ("::ffff:169.254.169.254", Some("egress_link_local")),
            ("::10.0.0.1", Some("egress_private")),
            ("64:ff9b::a9fe:a9fe", Some("egress_link_local")),
            ("2002:7f00:1::", Some("egress_loopback")),
            ("::", Some("egress_reserved")),
            ("140.82.112.6", None),
            ("2606:50c0:8000::154", None),
        ];
        for (ip, want) in cases {
            let got = forbidden_class(ip.parse().expect("ip")).map(|c| c.0);
            assert_eq!(got, *want, "{ip}");
        }
    }

    #[test]
    fn own_listeners_refused_even_when_mapped_or_allowed() {
        let g = EgressGuard::new(
            vec!["127.0.0.0/8".parse().expect("net")],
            Vec::new(),
            vec![443],
        );
        g.set_own_listeners(&["127.0.0.1:8081".parse().expect("addr")]);
        let admin: SocketAddr = "127.0.0.1:8081".parse().expect("addr");
        assert_eq!(
            g.check_addr("x", admin, true).map_err(|e| e.code),
            Err("airlock_listener")
        );
        let other: SocketAddr = "127.0.0.2:8081".parse().expect("addr");
        assert_eq!(
            g.check_addr("x", other, false).map_err(|e| e.code),
            Err("airlock_listener")
        );
        let fine: SocketAddr = "127.0.0.1:9000".parse().expect("addr");
        assert!(
            g.check_addr("x", fine, false).is_ok(),
            "allowed by egress.allow"
        );
    }

    #[test]
    fn mapped_and_allowed_hosts_pass() {
        let g = EgressGuard::new(Vec::new(), vec!["internal.example".into()], vec![443]);
        let lo: SocketAddr = "127.0.0.1:9443".parse().expect("addr");
        assert!(g.check_addr("api.github.com", lo, true).is_ok());
        assert!(g.check_addr("internal.example", lo, false).is_ok());
        assert_eq!(
            guard()
                .check_addr("evil.example", lo, false)
                .map_err(|e| e.code),
            Err("egress_loopback")
        );
        assert!(guard().check_port(443).is_ok());
        assert_eq!(
            guard().check_port(22).map_err(|e| e.code),
            Err("egress_port")
        );
    }

    /// A wildcard listener of Airlock's is refused on every address of this host, a public one
    /// included (only private and reserved ones were), even where the operator mapped the host.
    /// (Addresses NAT'd onto the host from outside, as on EC2, are on no interface: a
    /// `notify.base_url` or `admin.public_hosts` names those.)
    #[test]
    fn a_wildcard_listener_is_refused_on_every_local_address() {
        let g = guard();
        g.set_own_listeners(&["0.0.0.0:443".parse().expect("addr")]);
        let locals = local_addresses().expect("interface addresses");
        assert!(locals.iter().any(|ip| ip.is_loopback()), "{locals:?}");
        for ip in locals {
            let addr = SocketAddr::new(ip, 443);
            let err = g
                .check_addr("dash.example", addr, true)
                .expect_err("own listener");
            assert_eq!(err.code, "airlock_listener", "{addr}");
            assert!(g
                .check_addr("dash.example", SocketAddr::new(ip, 80), true)
                .is_ok());
        }
        // A public address that is not this host's stays reachable.
        assert!(g
            .check_addr(
                "api.example",
                "140.82.112.6:443".parse().expect("addr"),
                false
            )
            .is_ok());
    }
}
