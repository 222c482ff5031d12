//! Shared test harness: a fake TLS upstream with its own test CA that records what it receives,
//! an in-process Airlock on 127.0.0.1:0 with a temp CA dir and store, and client helpers
//! (reqwest through the proxy, curl).
#![allow(dead_code, unused_imports)]

pub mod git_http;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod raw;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use airlock::config::Config;
use airlock::proxy::{Lifecycle, Proxy};
use airlock::rules::Classifier;

pub use upstream::{FakeUpstream, UpstreamOptions};

/// Hosts the fake upstream's certificate covers.
pub const UPSTREAM_NAMES: &[&str] = &[
    "api.github.com",
    "api.stripe.com",
    "github.com",
    "upstream.test",
    "unknown.test",
    "localhost",
    "127.0.0.1",
];

pub use ports::spare_port;

/// [`spare_port`] on 127.0.0.1.
pub fn spare_addr() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], spare_port()))
}

pub fn init() {
    airlock::install_crypto_provider();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// How long [`eventually`] callers wait by default: generous, so a loaded 2-core CI machine does
/// not flake; a condition that holds returns as soon as it is seen, so passing tests pay nothing.
pub const WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How often [`eventually`] probes.
const POLL: std::time::Duration = std::time::Duration::from_millis(20);

/// What an [`eventually`] probe returns: `Some`/`Ok` ends the wait with the value; `None`/`Err`
/// means "not yet", and an `Err`'s payload is the observation reported if the wait times out.
pub trait Probe {
    type Value;
    fn settle(self) -> Result<Self::Value, String>;
}

impl<T> Probe for Option<T> {
    type Value = T;
    fn settle(self) -> Result<T, String> {
        self.ok_or_else(|| "None".to_string())
    }
}

impl<T, E: std::fmt::Debug> Probe for Result<T, E> {
    type Value = T;
    fn settle(self) -> Result<T, String> {
        self.map_err(|e| format!("{e:?}"))
    }
}

/// Waits for a condition instead of sleeping for a guessed time: polls `probe` every ~20 ms until
/// it returns `Some`/`Ok` and returns that value; panics naming `what` and the last observation
/// (the last `Err`) once `timeout` has passed. A probe still running at the deadline is dropped.
pub async fn eventually<F, Fut>(
    what: &str,
    timeout: std::time::Duration,
    mut probe: F,
) -> <Fut::Output as Probe>::Value
where
    F: FnMut() -> Fut,
    Fut: std::future::Future,
    Fut::Output: Probe,
{
    let started = tokio::time::Instant::now();
    let deadline = started + timeout;
    let mut tries = 0u32;
    loop {
        tries += 1;
        let last = match tokio::time::timeout_at(deadline, probe()).await {
            Ok(seen) => match seen.settle() {
                Ok(v) => return v,
                Err(last) => last,
            },
            Err(_) => "the probe was still running at the deadline".to_string(),
        };
        let now = tokio::time::Instant::now();
        if now >= deadline {
            panic!(
                "timed out after {:?} ({tries} tries) waiting for {what}; last observation: {last}",
                now - started
            );
        }
        tokio::time::sleep(POLL.min(deadline - now)).await;
    }
}

/// [`eventually`] for blocking code (no runtime): polls `probe` every ~20 ms on this thread.
pub fn eventually_blocking<O: Probe>(
    what: &str,
    timeout: std::time::Duration,
    mut probe: impl FnMut() -> O,
) -> O::Value {
    let started = std::time::Instant::now();
    let mut tries = 0u32;
    loop {
        tries += 1;
        let last = match probe().settle() {
            Ok(v) => return v,
            Err(last) => last,
        };
        let elapsed = started.elapsed();
        if elapsed >= timeout {
            panic!(
                "timed out after {elapsed:?} ({tries} tries) waiting for {what}; last observation: {last}"
            );
        }
        std::thread::sleep(POLL.min(timeout - elapsed));
    }
}

/// A running in-process Airlock (proxy, gate, admin API).
pub struct Airlock {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub dir: tempfile::TempDir,
    pub ca_pem: String,
    pub admin_token: String,
    pub proxy: Arc<Proxy>,
    pub gate: Arc<airlock::gate::Gate>,
    /// The instance's one-click link signer.
    pub links: Arc<airlock::notify::LinkSigner>,
    pub life: Lifecycle,
    pub config: Config,
}

impl Airlock {
    /// Starts Airlock with `toml` as its config file (listen addresses forced to port 0, CA and
    /// store in a temp dir); `hosts` are resolved to the fake upstream and its CA trusted.
    pub async fn start(toml: &str, upstream: &FakeUpstream, hosts: &[&str]) -> Airlock {
        Self::start_classified(toml, upstream, hosts, Arc::new(airlock::rules::AllowAll)).await
    }

    pub async fn start_classified(
        toml: &str,
        upstream: &FakeUpstream,
        hosts: &[&str],
        classifier: Arc<dyn Classifier>,
    ) -> Airlock {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = Self::config(toml, dir.path(), upstream, hosts);
        Self::start_with_parts(
            config,
            dir,
            classifier,
            Arc::new(airlock::gate::SystemClock),
        )
        .await
    }

    /// The config `start` would use, for tests that restart on the same directory.
    pub fn config(toml: &str, dir: &Path, upstream: &FakeUpstream, hosts: &[&str]) -> Config {
        let mut config = Config::from_toml("test.toml", toml).expect("test config");
        config.proxy.listen = "127.0.0.1:0".parse().expect("addr");
        config.admin.listen = "127.0.0.1:0".parse().expect("addr");
        config.tls.ca_dir = dir.join("certs");
        config.store.path = dir.join("data");
        config.admin.token_file = dir.join("data").join("admin-token");
        // Tests that do not configure agents exercise everything else anonymously.
        if config.agents.is_empty() {
            config.proxy.allow_anonymous = true;
        }
        config
            .upstream
            .extra_ca_files
            .push(upstream.ca_file.clone());
        for h in hosts {
            config.upstream.resolve.insert(h.to_string(), upstream.addr);
        }
        config
    }

    pub async fn start_with(config: Config, dir: tempfile::TempDir) -> Airlock {
        Self::start_with_parts(
            config,
            dir,
            Arc::new(airlock::rules::AllowAll),
            Arc::new(airlock::gate::SystemClock),
        )
        .await
    }

    pub async fn start_with_parts(
        config: Config,
        dir: tempfile::TempDir,
        classifier: Arc<dyn Classifier>,
        clock: Arc<dyn airlock::gate::Clock>,
    ) -> Airlock {
        let server = airlock::server::start(&config, classifier, clock)
            .await
            .expect("start airlock");
        Self::from_server(server, config, dir)
    }

    /// Starts on a store the test opened (e.g. wrapped in [`FaultyStore`]).
    pub async fn start_on_store(
        config: Config,
        dir: tempfile::TempDir,
        classifier: Arc<dyn Classifier>,
        store: Arc<dyn airlock::store::Store>,
    ) -> Airlock {
        let clock = Arc::new(airlock::gate::SystemClock);
        Self::start_on_store_at(config, dir, classifier, store, clock).await
    }

    /// Like [`Airlock::start_on_store`], on the test's clock.
    pub async fn start_on_store_at(
        config: Config,
        dir: tempfile::TempDir,
        classifier: Arc<dyn Classifier>,
        store: Arc<dyn airlock::store::Store>,
        clock: Arc<dyn airlock::gate::Clock>,
    ) -> Airlock {
        let server = airlock::server::start_with_store(&config, classifier, clock, store)
            .await
            .expect("start airlock");
        Self::from_server(server, config, dir)
    }

    fn from_server(
        server: airlock::server::Server,
        config: Config,
        dir: tempfile::TempDir,
    ) -> Airlock {
        Airlock {
            addr: server.proxy_addr,
            admin_addr: server.admin_addr,
            dir,
            ca_pem: server.ca_pem.clone(),
            admin_token: server.admin_token.clone(),
            proxy: server.proxy.clone(),
            gate: server.gate.clone(),
            links: server.links.clone(),
            life: server.life.clone(),
            config,
        }
    }

    /// Stops this instance and waits until its store is released.
    pub async fn stop(self) -> tempfile::TempDir {
        self.life.shutdown.cancel();
        self.life.tasks.close();
        let _ =
            tokio::time::timeout(std::time::Duration::from_secs(10), self.life.tasks.wait()).await;
        let Airlock { dir, .. } = self;
        dir
    }

    /// Calls the admin API.
    pub async fn admin(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let method = http::Method::from_bytes(method.as_bytes()).expect("method");
        airlock::admin::client::call(self.admin_addr, &self.admin_token, method, path, body)
            .await
            .expect("admin call")
    }

    /// The audit log as exported by the admin API (JSON Lines).
    pub async fn audit_export(&self) -> String {
        let (status, bytes) = airlock::admin::client::call_raw(
            self.admin_addr,
            &self.admin_token,
            http::Method::GET,
            "/v1/audit",
            None,
        )
        .await
        .expect("audit export");
        assert_eq!(status, 200);
        String::from_utf8(bytes.to_vec()).expect("utf8")
    }

    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Writes the CA to a file and returns its path (for curl --cacert).
    pub fn ca_file(&self) -> PathBuf {
        let p = self.dir.path().join("agent-ca.pem");
        std::fs::write(&p, &self.ca_pem).expect("write ca");
        p
    }

    /// A reqwest client going through this Airlock, trusting only its CA.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().expect("client")
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        let cert = reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("ca");
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(self.proxy_url()).expect("proxy"))
            .tls_certs_only([cert])
    }

    pub fn shutdown(&self) {
        self.life.shutdown.cancel();
    }
}

/// A real store whose writes to chosen trees can be made to fail with "disk full".
pub struct FaultyStore {
    pub inner: Arc<dyn airlock::store::Store>,
    pub fail_audit: std::sync::atomic::AtomicBool,
    pub fail_reviews: std::sync::atomic::AtomicBool,
    /// Armed: once the next write to the reviews tree lands, audit and review writes fail (the
    /// disk fills right after it).
    pub trip: std::sync::atomic::AtomicBool,
    /// Writes refused so far.
    pub refused: std::sync::atomic::AtomicUsize,
    /// Milliseconds the next commit that moves a review to `executing` (a claim) waits before
    /// it lands (a busy store); then back to 0.
    pub delay_claim_ms: std::sync::atomic::AtomicU64,
    /// How many of the next claims (commits moving a review to `executing`) are refused.
    pub fail_claims: std::sync::atomic::AtomicUsize,
    /// How many of the next claims land and are then reported failed (a flush that failed
    /// after the write).
    pub unflushed_claims: std::sync::atomic::AtomicUsize,
    /// How many of the next commits recording an answer (a review `executed`) are refused.
    pub fail_answers: std::sync::atomic::AtomicUsize,
    /// Refuses writes to the index tree (review indexes, money budget counters).
    pub fail_index: std::sync::atomic::AtomicBool,
    /// How many of the next reads of one review record (`get` on the reviews tree) fail.
    pub fail_review_reads: std::sync::atomic::AtomicUsize,
    /// Milliseconds every read of one review record takes (a slow store).
    pub slow_review_reads_ms: std::sync::atomic::AtomicU64,
    /// Slow review reads running now, and the most that ever ran at once.
    pub slow_reads_now: std::sync::atomic::AtomicUsize,
    pub slow_reads_peak: std::sync::atomic::AtomicUsize,
    /// Runs once, right after the next read of the finished-reviews index (retention's) and
    /// before the records it names are read: another writer's change in between.
    pub after_finished_read: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Runs once, right after the next read of a call's join entries (a resend looking for
    /// the review to join) and of the first review they name: another writer's change before
    /// the resend writes its join.
    pub after_join_read: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// `after_join_read` once the join entries were read, waiting for the review's read.
    join_read_armed: std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>,
    /// Reads of one review's audit entries (the by-review index): each claim makes one.
    pub claim_reads: std::sync::atomic::AtomicUsize,
    /// How many of the next commits that expire reviews (a sweep's chunks) are refused.
    pub fail_expiries: std::sync::atomic::AtomicUsize,
    /// For each commit that expects review records (a transition, a sweep's or retention's
    /// chunk): the bytes of the records it expects, i.e. what its caller read and holds.
    pub expected_review_bytes: std::sync::Mutex<Vec<usize>>,
}

impl FaultyStore {
    pub fn open(path: &Path) -> Arc<FaultyStore> {
        Arc::new(FaultyStore {
            inner: airlock::store::open(airlock::store::Backend::Redb, path).expect("store"),
            fail_audit: Default::default(),
            fail_reviews: Default::default(),
            trip: Default::default(),
            refused: Default::default(),
            delay_claim_ms: Default::default(),
            fail_claims: Default::default(),
            unflushed_claims: Default::default(),
            fail_answers: Default::default(),
            fail_index: Default::default(),
            fail_review_reads: Default::default(),
            slow_review_reads_ms: Default::default(),
            slow_reads_now: Default::default(),
            slow_reads_peak: Default::default(),
            after_finished_read: Default::default(),
            after_join_read: Default::default(),
            join_read_armed: Default::default(),
            claim_reads: Default::default(),
            fail_expiries: Default::default(),
            expected_review_bytes: Default::default(),
        })
    }
}

impl airlock::store::Store for FaultyStore {
    fn get(
        &self,
        tree: airlock::store::Tree,
        key: &[u8],
    ) -> Result<Option<Vec<u8>>, airlock::store::StoreError> {
        use std::sync::atomic::Ordering::SeqCst;
        let slow = self.slow_review_reads_ms.load(SeqCst);
        if tree == airlock::store::Tree::Reviews && slow > 0 {
            let now = self.slow_reads_now.fetch_add(1, SeqCst) + 1;
            self.slow_reads_peak.fetch_max(now, SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(slow));
            self.slow_reads_now.fetch_sub(1, SeqCst);
        }
        if tree == airlock::store::Tree::Reviews
            && self
                .fail_review_reads
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
        {
            return Err(airlock::store::StoreError::Io(
                "test store: read failed".into(),
            ));
        }
        let read = self.inner.get(tree, key);
        if tree == airlock::store::Tree::Reviews {
            let armed = self
                .join_read_armed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            if let Some(hook) = armed {
                hook();
            }
        }
        read
    }
    fn commit(
        &self,
        batches: Vec<airlock::store::Batch>,
    ) -> Result<Vec<bool>, airlock::store::StoreError> {
        use airlock::store::{Tree, Write};
        use std::sync::atomic::Ordering::SeqCst;
        let fails = |tree: &Tree| match tree {
            Tree::Audit => self.fail_audit.load(SeqCst),
            Tree::Reviews => self.fail_reviews.load(SeqCst),
            Tree::Index => self.fail_index.load(SeqCst),
            Tree::Meta => false,
        };
        let writes_state = |state: &[u8]| {
            batches.iter().flat_map(|b| &b.writes).any(|w| {
                matches!(w, Write::Put(Tree::Reviews, _, v)
                    if v.windows(state.len()).any(|x| x == state))
            })
        };
        // Takes one from `counter` if it is above zero.
        let take = |counter: &std::sync::atomic::AtomicUsize| {
            counter
                .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                .is_ok()
        };
        let expected: usize = batches
            .iter()
            .flat_map(|b| &b.expect)
            .filter(|(t, _, _)| *t == Tree::Reviews)
            .map(|(_, _, v)| v.as_ref().map_or(0, Vec::len))
            .sum();
        if expected > 0 {
            self.expected_review_bytes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(expected);
        }
        let fail = batches.iter().flat_map(|b| &b.writes).any(|w| match w {
            Write::Put(t, ..) | Write::Delete(t, _) | Write::Add(t, ..) => fails(t),
        }) || (writes_state(b"\"state\":\"executing\"") && take(&self.fail_claims))
            || (writes_state(b"\"state\":\"expired\"") && take(&self.fail_expiries))
            || (writes_state(b"\"state\":\"executed\"") && take(&self.fail_answers));
        if fail {
            self.refused.fetch_add(1, SeqCst);
            return Err(airlock::store::StoreError::Full("test store".into()));
        }
        if writes_state(b"\"state\":\"executing\"") {
            let ms = self.delay_claim_ms.swap(0, SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(ms));
            if take(&self.unflushed_claims) {
                self.inner.commit(batches)?;
                return Err(airlock::store::StoreError::Io(
                    "test store: the flush after the write failed".into(),
                ));
            }
        }
        let reviews = batches.iter().flat_map(|b| &b.writes).any(|w| {
            matches!(
                w,
                Write::Put(Tree::Reviews, ..) | Write::Delete(Tree::Reviews, _)
            )
        });
        let done = self.inner.commit(batches);
        if reviews && self.trip.swap(false, SeqCst) {
            self.fail_audit.store(true, SeqCst);
            self.fail_reviews.store(true, SeqCst);
        }
        done
    }
    fn range(
        &self,
        tree: airlock::store::Tree,
        start: &[u8],
        end: Option<&[u8]>,
        limit: usize,
    ) -> Result<Vec<airlock::store::Entry>, airlock::store::StoreError> {
        if tree == airlock::store::Tree::Index && start.first() == Some(&b'a') {
            self.claim_reads
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        let rows = self.inner.range(tree, start, end, limit);
        let lock = |m: &std::sync::Mutex<Option<Box<dyn FnOnce() + Send>>>| {
            m.lock().unwrap_or_else(|e| e.into_inner()).take()
        };
        match (tree, start.first()) {
            (airlock::store::Tree::Index, Some(b'f')) => {
                if let Some(hook) = lock(&self.after_finished_read) {
                    hook();
                }
            }
            (airlock::store::Tree::Index, Some(b'j')) => {
                if let Some(hook) = lock(&self.after_join_read) {
                    *self
                        .join_read_armed
                        .lock()
                        .unwrap_or_else(|e| e.into_inner()) = Some(hook);
                }
            }
            _ => {}
        }
        rows
    }
}

/// Sends `DELETE url` through `client`, which Airlock must hold (423); the review's id.
pub async fn held_delete(client: &reqwest::Client, url: &str) -> String {
    let r = client.delete(url).send().await.expect("delete");
    assert_eq!(r.status(), 423);
    r.headers()["airlock-review-id"]
        .to_str()
        .expect("id")
        .to_string()
}

/// Runs curl with `args`, returning (exit code, stdout, stderr).
pub async fn curl(args: &[String]) -> (i32, String, String) {
    let args = args.to_vec();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(&args)
            .output()
            .expect("curl must be installed (apt-get install curl)");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("join")
}

/// Base curl arguments for going through `airlock`.
pub fn curl_args(airlock: &Airlock, extra: &[&str]) -> Vec<String> {
    let ca = airlock.ca_file();
    let mut v: Vec<String> = vec![
        "-sS".into(),
        "--max-time".into(),
        "20".into(),
        "--proxy".into(),
        airlock.proxy_url(),
        "--cacert".into(),
        path_str(&ca),
    ];
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Writes a provider credential file as Airlock accepts one: mode 0600, owned by this user
/// (a credential file other users could read is refused).
pub fn write_secret(path: &Path, contents: impl AsRef<[u8]>) {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create secret");
    // An existing file keeps its mode on open: set it.
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .expect("chmod 600");
    f.write_all(contents.as_ref()).expect("write secret");
}

pub fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Current and peak resident set size of this process, in KiB.
pub fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Resets the peak-RSS counter (VmHWM) of this process.
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Every review in `state` (any state: `None`), page by page through the gate's listing.
pub async fn all_reviews(
    gate: &std::sync::Arc<airlock::gate::Gate>,
    state: Option<airlock::gate::ReviewState>,
) -> Vec<airlock::gate::Review> {
    let q = airlock::gate::index::Query {
        state,
        ..Default::default()
    };
    let (mut out, mut cursor) = (Vec::new(), None);
    loop {
        let page = gate
            .list_page(q.clone(), airlock::gate::index::MAX_LIMIT, cursor)
            .await
            .expect("list reviews");
        out.extend(page.reviews);
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => return out,
        }
    }
}
