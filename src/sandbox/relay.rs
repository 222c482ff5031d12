//! The relay: the sandbox's only way out. Accepts on the listener bound inside the namespace
//! and splices each connection, byte for byte, to Airlock's proxy in the host namespace, once
//! it knows the proxy's listener is Airlock's ([`crate::listener_owner`]): COMMAND sends its
//! agent token on it, and any local user may hold a free loopback port.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};

/// Accepts forever (until the runtime is dropped).
pub async fn serve(listener: TcpListener, proxy: SocketAddr, owners: Arc<Vec<u32>>) {
    loop {
        match listener.accept().await {
            Ok((inner, _)) => {
                tokio::spawn(splice(inner, proxy, owners.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "airlock run: relay accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn splice(mut inner: TcpStream, proxy: SocketAddr, owners: Arc<Vec<u32>>) {
    let mut outer = match TcpStream::connect(proxy).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, %proxy, "airlock run: cannot reach the Airlock proxy");
            return;
        }
    };
    // Connected, nothing relayed yet: the listener that took it is among those checked.
    if let Err(why) = crate::listener_owner::check(proxy, &owners, "agent's connection") {
        tracing::warn!("airlock run: {why}");
        return;
    }
    let _ = inner.set_nodelay(true);
    let _ = outer.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut inner, &mut outer).await;
}
