//! A real `airlock serve` child process (the test-profile binary cargo built for this test):
//! spawn it on a config file, read the addresses it prints, talk to its admin API, kill it.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running `airlock serve`.
pub struct Serve {
    pub child: Child,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
    pub admin_token: String,
    pub ca_pem: String,
}

impl Serve {
    /// Starts `airlock --config cfg serve` with stderr appended to `log`; waits for its addresses.
    /// `store_dir` and `ca_dir` are what the config names (to read the admin token and CA).
    pub fn spawn(cfg: &Path, store_dir: &Path, ca_dir: &Path, log: &Path) -> Serve {
        Serve::spawn_with_env(cfg, store_dir, ca_dir, log, &[])
    }

    /// [`Serve::spawn`] with `env` set for the child; its admin token is `AIRLOCK_ADMIN_TOKEN`
    /// when `env` sets that, else the token file's.
    pub fn spawn_with_env(
        cfg: &Path,
        store_dir: &Path,
        ca_dir: &Path,
        log: &Path,
        env: &[(&str, &str)],
    ) -> Serve {
        let log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .arg("--config")
            .arg(cfg)
            .arg("serve")
            .env("AIRLOCK_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .expect("spawn airlock");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let (mut proxy, mut admin) = (None, None);
        while proxy.is_none() || admin.is_none() {
            let Some(Ok(line)) = lines.next() else {
                let _ = child.kill();
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("airlock exited before printing its addresses; log:\n{log}");
            };
            if let Some(a) = line.strip_prefix("airlock: proxy listening on ") {
                proxy = a.trim().parse().ok();
            }
            if let Some(rest) = line.strip_prefix("airlock: admin API on http://") {
                admin = rest.split_whitespace().next().and_then(|a| a.parse().ok());
            }
        }
        // Keep draining stdout so the child never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        let admin_token = match env.iter().find(|(k, _)| *k == "AIRLOCK_ADMIN_TOKEN") {
            Some((_, t)) => t.to_string(),
            None => std::fs::read_to_string(store_dir.join("admin-token"))
                .expect("admin token")
                .trim()
                .to_string(),
        };
        let ca_pem = std::fs::read_to_string(ca_dir.join("ca.pem")).expect("ca.pem");
        Serve {
            child,
            proxy: proxy.expect("proxy addr"),
            admin: admin.expect("admin addr"),
            admin_token,
            ca_pem,
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait (up to 10 s, then SIGKILL).
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..100 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = http::Method::from_bytes(method.as_bytes()).expect("method");
        airlock::admin::client::call(self.admin, &self.admin_token, method, path, body)
            .await
            .expect("admin call")
    }

    /// A reqwest client that goes through this Airlock (anonymous) and trusts its CA.
    pub fn client(&self) -> reqwest::Client {
        let cert = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca");
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{}", self.proxy)).expect("proxy"))
            .tls_certs_only([cert])
            .timeout(Duration::from_secs(120))
            .build()
            .expect("client")
    }

    /// Review states by id, from the admin API.
    pub async fn states(&self) -> std::collections::HashMap<String, String> {
        let mut out = std::collections::HashMap::new();
        let mut path = "/v1/reviews?limit=1000".to_string();
        loop {
            let (code, list) = self.admin("GET", &path, None).await;
            assert_eq!(code, 200, "{list}");
            for r in list["reviews"].as_array().expect("reviews") {
                out.insert(
                    r["reviewId"].as_str().unwrap_or_default().to_string(),
                    r["state"].as_str().unwrap_or_default().to_string(),
                );
            }
            match list["next_cursor"].as_str() {
                Some(c) => path = format!("/v1/reviews?limit=1000&cursor={c}"),
                None => return out,
            }
        }
    }
}

/// A test that panics must not leave an `airlock serve` running.
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes an `airlock.toml` in `dir` for a spawned Airlock: port-0 listeners, CA in `dir/certs`,
/// store in `dir/data`, the fake upstream resolved for `hosts` and its CA trusted, anonymous
/// agents allowed (test only), the store on `backend`; `extra` is added (whole sections).
/// Returns (config, store dir, CA dir).
pub fn write_config(
    dir: &Path,
    name: &str,
    backend: &str,
    upstream: &super::FakeUpstream,
    hosts: &[&str],
    extra: &str,
) -> (PathBuf, PathBuf, PathBuf) {
    let store = dir.join("data");
    let ca = dir.join("certs");
    let resolve: String = hosts
        .iter()
        .map(|h| format!("{h:?} = \"{}\"\n", upstream.addr))
        .collect();
    let cfg = dir.join(name);
    std::fs::write(
        &cfg,
        format!(
            "[proxy]\nlisten = \"127.0.0.1:0\"\nallow_anonymous = true\n\
             [admin]\nlisten = \"127.0.0.1:0\"\n\
             [tls]\nca_dir = {:?}\n[store]\npath = {:?}\nbackend = {backend:?}\n{extra}\n\
             [upstream]\nextra_ca_files = [{:?}]\n[upstream.resolve]\n{resolve}",
            super::path_str(&ca),
            super::path_str(&store),
            super::path_str(&upstream.ca_file),
        ),
    )
    .expect("write config");
    (cfg, store, ca)
}

/// `airlock --config CFG ARGS`, outside any environment the test run has (no `AIRLOCK_HOME`,
/// `AIRLOCK_CONFIG` or `AIRLOCK_ADMIN_TOKEN`), logging warnings only: its whole output, exit
/// status included.
pub fn cli_output(cfg: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
        .arg("--config")
        .arg(cfg)
        .args(args)
        .env_remove("AIRLOCK_HOME")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_ADMIN_TOKEN")
        .env("AIRLOCK_LOG", "warn")
        .output()
        .expect("run airlock")
}

/// [`cli_output`] as (success, stdout, stderr).
pub fn cli(cfg: &Path, args: &[&str]) -> (bool, String, String) {
    let out = cli_output(cfg, args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
