//! Host routing: which hosts are intercepted, tunnelled or refused, and the name under which
//! Airlock answers agents itself. How a request is classified is the rules' [`Classifier`];
//! what may go upstream is decided by `upstream::permit`.

use crate::config::UnknownHosts;
use crate::rules::Classifier;

pub use crate::gate::agent_api::LOCAL_HOST;

/// What happens to a connection or plain-HTTP request for a host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// Terminate TLS and classify every request.
    Inspect,
    /// Pass bytes through unseen.
    Tunnel,
    /// Refuse (403).
    Deny,
    /// Airlock's own agent API.
    Local,
}

/// Host routing: the configured inspect list plus every host the catalog names.
pub struct HostPolicy {
    pub inspect_hosts: Vec<String>,
    pub unknown_hosts: UnknownHosts,
}

impl HostPolicy {
    pub fn route(&self, host: &str, classifier: &dyn Classifier) -> Route {
        if host == LOCAL_HOST {
            Route::Local
        } else if self.inspect_hosts.iter().any(|h| h == host) || classifier.inspects(host) {
            Route::Inspect
        } else {
            match self.unknown_hosts {
                UnknownHosts::Tunnel => Route::Tunnel,
                UnknownHosts::Deny => Route::Deny,
            }
        }
    }
}
