//! A throwaway PostgreSQL cluster for tests: `initdb` and `pg_ctl` on a temp dir and a free
//! loopback port (trust authentication, nothing else listening), run as the `postgres` user (or
//! `nobody`) when the tests run as root, as PostgreSQL refuses root. One cluster per test
//! process, started on first use and stopped when the process exits; each caller gets a
//! database of its own.
//!
//! [`Cluster::shared_tls`] is a second cluster that also speaks TLS, with a certificate for
//! `localhost` signed by a test CA; [`Cluster::private`] starts one for a single test.
//!
//! Without the binaries the caller gets `None` and a printed reason, unless
//! `AIRLOCK_REQUIRE_POSTGRES=1` (set by `.ci/run`): then missing PostgreSQL fails the test.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

pub struct Cluster {
    data: PathBuf,
    port: u16,
    pg_ctl: PathBuf,
    run_as: Option<String>,
}

/// A cluster speaking TLS, and the CA files to trust (or not).
pub struct TlsCluster {
    pub cluster: Cluster,
    /// The CA that signed the server's certificate (for "localhost"), PEM.
    pub ca_file: PathBuf,
    /// Another CA, which signed nothing the server shows.
    pub other_ca_file: PathBuf,
}

static CLUSTER: OnceLock<Option<Cluster>> = OnceLock::new();
static TLS_CLUSTER: OnceLock<Option<TlsCluster>> = OnceLock::new();
/// Where the running clusters' data is, for the stop at exit.
static RUNNING: Mutex<Vec<(PathBuf, PathBuf, Option<String>)>> = Mutex::new(Vec::new());
static AT_EXIT: std::sync::Once = std::sync::Once::new();
static NEXT_DB: AtomicU32 = AtomicU32::new(0);

/// The directory holding `initdb`, `pg_ctl` and `postgres`: on PATH, else Debian's
/// `/usr/lib/postgresql/<version>/bin` (newest version).
fn bin_dir() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").exists() && dir.join("pg_ctl").exists() {
                return Some(dir);
            }
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|d| d.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn command(run_as: &Option<String>, program: &Path) -> Command {
    match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

extern "C" fn stop_at_exit() {
    let running = RUNNING
        .lock()
        .map(|mut r| std::mem::take(&mut *r))
        .unwrap_or_default();
    for (pg_ctl, data, run_as) in running {
        let _ = command(&run_as, &pg_ctl)
            .args(["stop", "-m", "immediate", "-D"])
            .arg(&data)
            .output();
        if let Some(dir) = data.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

impl Cluster {
    /// The process's cluster, started on first use; `None` (with the reason printed) when
    /// PostgreSQL is not installed and not required.
    pub fn shared() -> Option<&'static Cluster> {
        CLUSTER
            .get_or_init(|| skip_unless_required(Cluster::start(None, "")))
            .as_ref()
    }

    /// The process's TLS cluster (a second one), started on first use.
    pub fn shared_tls() -> Option<&'static TlsCluster> {
        TLS_CLUSTER
            .get_or_init(|| {
                let certs = server_certs();
                let cluster = skip_unless_required(Cluster::start(Some(&certs), ""))?;
                // Beside the cluster, removed with it at exit.
                let dir = cluster.data.parent().expect("cluster dir").to_path_buf();
                let (ca_file, other_ca_file) = (dir.join("ca.pem"), dir.join("other-ca.pem"));
                std::fs::write(&ca_file, &certs.ca_pem).expect("write CA");
                std::fs::write(&other_ca_file, &certs.other_ca_pem).expect("write CA");
                Some(TlsCluster {
                    cluster,
                    ca_file,
                    other_ca_file,
                })
            })
            .as_ref()
    }

    /// A cluster of the caller's own (not shared), started with `options` added to the
    /// server's (`-c name=value …`), for settings that would disturb other tests.
    pub fn private(options: &str) -> Option<Cluster> {
        skip_unless_required(Cluster::start(None, options))
    }

    fn start(tls: Option<&ServerCerts>, extra: &str) -> Result<Cluster, String> {
        let bin = bin_dir().ok_or("no initdb/pg_ctl on PATH or in /usr/lib/postgresql")?;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = root.then(|| {
            let has_postgres = Command::new("id")
                .arg("postgres")
                .output()
                .is_ok_and(|o| o.status.success());
            if has_postgres { "postgres" } else { "nobody" }.to_string()
        });
        let dir = tempfile::Builder::new()
            .prefix("airlock-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?
            .keep();
        let data = dir.join("data");
        if let Some(user) = &run_as {
            let out = Command::new("chown")
                .arg(user)
                .arg(&dir)
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "chown {user}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let out = command(&run_as, &bin.join("initdb"))
            .args([
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
                "-D",
            ])
            .arg(&data)
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !out.status.success() {
            return Err(format!("initdb: {}", String::from_utf8_lossy(&out.stderr)));
        }
        let port = super::ports::spare_port();
        let mut options = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=200 {extra}",
            dir.display()
        );
        if let Some(certs) = tls {
            // The key must be the server user's and private, or PostgreSQL refuses it.
            let (cert, key) = (dir.join("server.crt"), dir.join("server.key"));
            std::fs::write(&cert, &certs.cert_pem).map_err(|e| e.to_string())?;
            std::fs::write(&key, &certs.key_pem).map_err(|e| e.to_string())?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
            if let Some(user) = &run_as {
                let out = Command::new("chown")
                    .arg(user)
                    .arg(&cert)
                    .arg(&key)
                    .output()
                    .map_err(|e| e.to_string())?;
                if !out.status.success() {
                    return Err(format!("chown: {}", String::from_utf8_lossy(&out.stderr)));
                }
            }
            options.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
                cert.display(),
                key.display()
            ));
        }
        let pg_ctl = bin.join("pg_ctl");
        let out = command(&run_as, &pg_ctl)
            .args(["start", "-w", "-t", "60", "-D"])
            .arg(&data)
            .args(["-l"])
            .arg(dir.join("log"))
            .args(["-o", &options])
            .output()
            .map_err(|e| format!("pg_ctl start: {e}"))?;
        if !out.status.success() {
            let log = std::fs::read_to_string(dir.join("log")).unwrap_or_default();
            return Err(format!(
                "pg_ctl start: {}{log}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        if let Ok(mut r) = RUNNING.lock() {
            r.push((pg_ctl.clone(), data.clone(), run_as.clone()));
        }
        // SAFETY: registers a plain extern "C" function, once.
        AT_EXIT.call_once(|| unsafe {
            libc::atexit(stop_at_exit);
        });
        Ok(Cluster {
            data,
            port,
            pg_ctl,
            run_as,
        })
    }

    /// The URL of database `db` (trust authentication: no password).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The URL of database `db` by the name its TLS certificate carries ("localhost", reached
    /// at 127.0.0.1, where the cluster listens), with `params` (e.g. `sslmode=require`).
    pub fn url_by_name(&self, db: &str, params: &str) -> String {
        format!(
            "postgres://postgres@localhost:{}/{db}?hostaddr=127.0.0.1&{params}",
            self.port
        )
    }

    /// The database name of a URL this cluster made.
    pub fn database_of(url: &str) -> String {
        url.rsplit('/').next().unwrap_or_default().to_string()
    }

    /// A new, empty database; its URL.
    pub fn fresh_database(&self) -> String {
        let name = format!(
            "t_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::SeqCst)
        );
        psql(&self.url("postgres"), &format!("CREATE DATABASE {name}"));
        self.url(&name)
    }
}

/// Runs `sql` (simple query protocol) on `url`, on a thread and runtime of its own (the caller
/// may be inside a runtime or not); the first column of every row returned.
pub fn psql(url: &str, sql: &str) -> Vec<String> {
    let (url, sql) = (url.to_string(), sql.to_string());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            let driven = tokio::spawn(connection);
            let rows = client.simple_query(&sql).await.expect("query");
            drop(client);
            let _ = driven.await;
            rows.into_iter()
                .filter_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
                    _ => None,
                })
                .collect()
        })
    })
    .join()
    .expect("psql")
}

fn skip_unless_required<T>(started: Result<T, String>) -> Option<T> {
    match started {
        Ok(c) => Some(c),
        Err(why) => {
            let required = std::env::var("AIRLOCK_REQUIRE_POSTGRES").is_ok_and(|v| v == "1");
            assert!(!required, "PostgreSQL is required here but: {why}");
            eprintln!("skipping the PostgreSQL backend: {why}");
            None
        }
    }
}

/// A server certificate for "localhost" and its key, the test CA that signed it and another CA
/// (PEM).
struct ServerCerts {
    cert_pem: String,
    key_pem: String,
    ca_pem: String,
    other_ca_pem: String,
}

fn server_certs() -> ServerCerts {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
    let ca = |name: &str| {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let pem = params.self_signed(&key).expect("ca").pem();
        (Issuer::new(params, key), pem)
    };
    let (issuer, ca_pem) = ca("Airlock PostgreSQL Test CA");
    let (_, other_pem) = ca("Some Other CA");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("server certificate");
    ServerCerts {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        ca_pem,
        other_ca_pem: other_pem,
    }
}
