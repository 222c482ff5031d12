//! Where the admin listener is reachable from: a wildcard `admin.listen` (`0.0.0.0`, `::`), or
//! the proxy's own address other than loopback, puts the admin API (sign-in, approvals, the
//! unauthenticated budget reviewers need) on the network agents use. Warned about at start and
//! by `config check`, not refused: a deployment may rely on a network of its own for it (the
//! image's default command binds `0.0.0.0`, and compose keeps agents off that network).

use std::net::SocketAddr;

/// The warning for an admin listener at `admin` beside a proxy at `proxy`, if it needs one.
pub fn admin_exposure(admin: SocketAddr, proxy: SocketAddr) -> Option<String> {
    let fix = "bind admin.listen (or --admin-listen) to an address only reviewers' network has \
               (in docker compose, an alias on a network agents are not on, such as \
               airlock-admin:8081), or to 127.0.0.1 behind a reverse proxy or SSH tunnel";
    if admin.ip().is_unspecified() {
        return Some(format!(
            "admin.listen {admin} is a wildcard address: the admin API (sign-in, approvals, \
             token guesses) is reachable from every network this host is on, agents' networks \
             included, unless the network itself keeps them off; {fix}"
        ));
    }
    if admin.ip() == proxy.ip() && !admin.ip().is_loopback() {
        return Some(format!(
            "admin.listen {admin} is on the proxy's address {}: every agent that reaches the \
             proxy reaches the admin API (sign-in, approvals, token guesses) too; {fix}",
            proxy.ip()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::admin_exposure;

    #[test]
    fn wildcards_and_the_proxys_address_are_warned_about() {
        let at = |a: &str, p: &str| admin_exposure(a.parse().ok()?, p.parse().ok()?);
        assert!(at("0.0.0.0:8081", "127.0.0.1:8080").is_some());
        assert!(at("[::]:8081", "[::1]:8080").is_some());
        assert!(at("192.0.2.7:8081", "192.0.2.7:8080").is_some());
        assert!(at("127.0.0.1:8081", "127.0.0.1:8080").is_none());
        assert!(at("192.0.2.8:8081", "0.0.0.0:8080").is_none());
    }
}
