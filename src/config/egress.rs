//! `[egress]`: destinations agents may reach beyond the public internet, and the allowed ports.

use serde::Deserialize;

use super::normalize_host;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawEgress {
    pub(super) allow: Vec<String>,
    pub(super) ports: Vec<u16>,
}

impl Default for RawEgress {
    fn default() -> Self {
        Self {
            allow: Vec::new(),
            ports: vec![443, 80],
        }
    }
}

/// Destinations agents may reach beyond the public internet, and the allowed ports.
#[derive(Debug, Clone)]
pub struct EgressConfig {
    pub allow_nets: Vec<ipnet::IpNet>,
    pub allow_hosts: Vec<String>,
    pub ports: Vec<u16>,
}

pub(super) fn check(raw: &RawEgress) -> Result<EgressConfig, String> {
    let mut allow_nets = Vec::new();
    let mut allow_hosts = Vec::new();
    for a in &raw.allow {
        if let Ok(net) = a.parse::<ipnet::IpNet>() {
            allow_nets.push(net);
        } else if let Ok(ip) = a.parse::<std::net::IpAddr>() {
            allow_nets.push(ipnet::IpNet::from(ip));
        } else {
            allow_hosts.push(
                normalize_host(a)
                    .ok_or_else(|| format!("allow: {a:?} is neither a CIDR, an IP nor a host"))?,
            );
        }
    }
    if raw.ports.is_empty() || raw.ports.contains(&0) {
        return Err("ports: list at least one port, none of them 0".into());
    }
    Ok(EgressConfig {
        allow_nets,
        allow_hosts,
        ports: raw.ports.clone(),
    })
}
