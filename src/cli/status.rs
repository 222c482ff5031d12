//! `airlock status`: where the config, CA, store and admin token are, the listen addresses (the
//! running server's, which it tells over the admin socket, else the config's), and whether the
//! server answers `/readyz`. Reads only; creates nothing.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use airlock::config::Config;

/// How long the readiness probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

fn present(p: &Path) -> &'static str {
    if p.exists() {
        "present"
    } else {
        "missing"
    }
}

pub(super) async fn status(config: Config) -> Result<()> {
    let home = &config.home;
    match &config.source {
        Some(f) => println!("config file:  {}", f.display()),
        None => println!("config file:  none (built-in defaults)"),
    }
    println!("found:        {}", home.describe());
    let ca = config.tls.ca_dir.join(airlock::tls::CA_CERT_FILE);
    println!("CA:           {} ({})", ca.display(), present(&ca));
    match config.store.backend {
        airlock::store::Backend::Postgres => println!("store:        postgres (store.url)"),
        b => println!(
            "store:        {b:?} at {} ({})",
            config.store.path.display(),
            present(&config.store.path)
        ),
    }
    let token_file = &config.admin.token_file;
    let token_env = match airlock::admin::env_token() {
        Ok(Some(_)) if airlock::admin::stale_file(token_file) => {
            "; AIRLOCK_ADMIN_TOKEN overrides it, and it holds another, stale token"
        }
        Ok(Some(_)) => "; AIRLOCK_ADMIN_TOKEN overrides it",
        Ok(None) => "",
        Err(_) => "; AIRLOCK_ADMIN_TOKEN is set but refused (too short)",
    };
    println!(
        "admin token:  {} ({}{token_env})",
        token_file.display(),
        present(token_file),
    );
    if let Some(f) = &config.agents_file {
        println!("agents file:  {} ({})", f.display(), present(f));
    }
    let addr = airlock::admin::client::Target::of(&config);
    let probe = airlock::admin::client::call(&addr, "", http::Method::GET, "/readyz", None);
    let answer = match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok((200, body))) => Ok(body),
        Ok(Ok((code, body))) => Err(format!("answers /readyz with {code}: {body}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {PROBE_TIMEOUT:?}")),
    };
    // What the server listens on (it says so over the admin socket), else the config's.
    let served = answer.as_ref().ok().map(|b| &b["listen"]);
    for (label, key, configured) in [
        ("proxy listen", "proxy", config.proxy.listen),
        ("admin listen", "admin", config.admin.listen),
    ] {
        match served.and_then(|l| l[key].as_str()) {
            Some(a) if a == configured.to_string() => println!("{label}: {a} (server)"),
            Some(a) => println!("{label}: {a} (server; the config says {configured})"),
            None => println!("{label}: {configured} (config)"),
        }
    }
    if let Some(s) = config.admin_socket() {
        println!("admin socket: {}", s.display());
    }
    match answer {
        Ok(_) => {
            match &addr {
                airlock::admin::client::Target::Tcp(a, _) => {
                    println!("server:       ready (http://{a}/readyz)")
                }
                socket => println!("server:       ready (admin socket {socket})"),
            }
            Ok(())
        }
        Err(why) => {
            println!("server:       not ready: {why}");
            anyhow::bail!("the server at {addr} is not ready")
        }
    }
}
