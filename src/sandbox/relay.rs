//! The relay: the sandbox's only way out. Accepts on the listener bound inside the namespace
//! and splices each connection, byte for byte, to Airlock's proxy in the host namespace.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};

/// Accepts forever (until the runtime is dropped).
pub async fn serve(listener: TcpListener, proxy: SocketAddr) {
    loop {
        match listener.accept().await {
            Ok((inner, _)) => {
                tokio::spawn(splice(inner, proxy));
            }
            Err(e) => {
                tracing::warn!(error = %e, "airlock run: relay accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

async fn splice(mut inner: TcpStream, proxy: SocketAddr) {
    let mut outer = match TcpStream::connect(proxy).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, %proxy, "airlock run: cannot reach the Airlock proxy");
            return;
        }
    };
    let _ = inner.set_nodelay(true);
    let _ = outer.set_nodelay(true);
    let _ = tokio::io::copy_bidirectional(&mut inner, &mut outer).await;
}
