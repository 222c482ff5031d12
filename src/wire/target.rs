//! Destinations: parsing CONNECT targets and request authorities into one normalised form,
//! so the CONNECT authority, the TLS SNI and each request's Host can be compared exactly.

use std::fmt;
use std::net::IpAddr;

/// A normalised destination: lower-case host without trailing dot (IPv6 without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("missing port in {0:?}")]
    NoPort(String),
    #[error("bad port in {0:?}")]
    BadPort(String),
    #[error("bad host in {0:?}")]
    BadHost(String),
}

impl Target {
    /// Parses `host:port` (CONNECT authority-form); the port is mandatory.
    pub fn parse_connect(authority: &str) -> Result<Target, TargetError> {
        let (host, port) = split_host_port(authority)?;
        let port = port.ok_or_else(|| TargetError::NoPort(authority.to_string()))?;
        Ok(Target {
            host: normalize(host, authority)?,
            port,
        })
    }

    /// Parses a Host header or URI authority; a missing port means `default_port`.
    pub fn parse_authority(authority: &str, default_port: u16) -> Result<Target, TargetError> {
        let (host, port) = split_host_port(authority)?;
        Ok(Target {
            host: normalize(host, authority)?,
            port: port.unwrap_or(default_port),
        })
    }

    pub fn ip(&self) -> Option<IpAddr> {
        self.host.parse().ok()
    }

    /// `host[:port]` for a URI, bracketing IPv6 and omitting the scheme's default port.
    pub fn uri_authority(&self, default_port: u16) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == default_port {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri_authority(0))
    }
}

fn split_host_port(s: &str) -> Result<(&str, Option<u16>), TargetError> {
    let bad_port = || TargetError::BadPort(s.to_string());
    let parse_port = |p: &str| -> Result<u16, TargetError> {
        if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad_port());
        }
        match p.parse::<u16>() {
            Ok(0) | Err(_) => Err(bad_port()),
            Ok(n) => Ok(n),
        }
    };
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| TargetError::BadHost(s.to_string()))?;
        if host.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(TargetError::BadHost(s.to_string()));
        }
        return match after {
            "" => Ok((host, None)),
            p => match p.strip_prefix(':') {
                Some(p) => Ok((host, Some(parse_port(p)?))),
                None => Err(TargetError::BadHost(s.to_string())),
            },
        };
    }
    match s.rsplit_once(':') {
        Some((host, p)) => {
            if host.contains(':') {
                // Bare IPv6 without brackets is ambiguous.
                return Err(TargetError::BadHost(s.to_string()));
            }
            Ok((host, Some(parse_port(p)?)))
        }
        None => Ok((s, None)),
    }
}

fn normalize(host: &str, whole: &str) -> Result<String, TargetError> {
    let bad = || TargetError::BadHost(whole.to_string());
    if let Ok(v6) = host.parse::<std::net::Ipv6Addr>() {
        return Ok(v6.to_string());
    }
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.is_empty() || host.len() > 253 {
        return Err(bad());
    }
    // ASCII letters, digits, '-', '.', '_' only: IDNs must arrive as punycode.
    let ok = host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_');
    if !ok
        || host
            .split('.')
            .any(|label| label.is_empty() || label.len() > 63)
    {
        return Err(bad());
    }
    Ok(host.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_targets() {
        let ok: &[(&str, &str, u16)] = &[
            ("api.github.com:443", "api.github.com", 443),
            ("API.GitHub.COM.:443", "api.github.com", 443),
            ("127.0.0.1:8443", "127.0.0.1", 8443),
            ("[::1]:443", "::1", 443),
            ("xn--bcher-kva.example:443", "xn--bcher-kva.example", 443),
        ];
        for (input, host, port) in ok {
            let t = Target::parse_connect(input).expect(input);
            assert_eq!((t.host.as_str(), t.port), (*host, *port), "{input}");
        }
        let bad: &[(&str, TargetError)] = &[
            (
                "api.github.com",
                TargetError::NoPort("api.github.com".into()),
            ),
            (
                "api.github.com:",
                TargetError::BadPort("api.github.com:".into()),
            ),
            (
                "api.github.com:0",
                TargetError::BadPort("api.github.com:0".into()),
            ),
            (
                "api.github.com:70000",
                TargetError::BadPort("api.github.com:70000".into()),
            ),
            (
                "api.github.com:+443",
                TargetError::BadPort("api.github.com:+443".into()),
            ),
            ("[::1:443", TargetError::BadHost("[::1:443".into())),
            ("::1:443", TargetError::BadHost("::1:443".into())),
            (
                "[nothost]:443",
                TargetError::BadHost("[nothost]:443".into()),
            ),
            (
                "bücher.example:443",
                TargetError::BadHost("bücher.example:443".into()),
            ),
            ("a..b:443", TargetError::BadHost("a..b:443".into())),
            (":443", TargetError::BadHost(":443".into())),
            (
                "user@host:443",
                TargetError::BadHost("user@host:443".into()),
            ),
        ];
        for (input, want) in bad {
            assert_eq!(Target::parse_connect(input).as_ref(), Err(want), "{input}");
        }
    }

    #[test]
    fn authorities_default_port() {
        let t = Target::parse_authority("Example.com", 443).expect("ok");
        assert_eq!((t.host.as_str(), t.port), ("example.com", 443));
        assert_eq!(t.uri_authority(443), "example.com");
        let t = Target::parse_authority("[::1]:8443", 443).expect("ok");
        assert_eq!(t.uri_authority(443), "[::1]:8443");
    }
}
