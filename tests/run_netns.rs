//! `airlock run` end to end with the real binary against an in-process Airlock: a sandboxed
//! command cannot reach anything directly (upstream, host address, admin port, DNS), reaches
//! Airlock through the relay (DELETE held with 423, GET passes), leaves no namespace or process
//! behind (also after SIGTERM), and without privilege it refuses with a clear message.
//! Needs root and a kernel that allows network namespaces; skips (saying so) only where the
//! kernel refuses to create one.

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use support::{path_str, Airlock, FakeUpstream};
use tokio::io::{AsyncBufReadExt, BufReader};

const BIN: &str = env!("CARGO_BIN_EXE_airlock");

struct Setup {
    airlock: Airlock,
    up: FakeUpstream,
    token: String,
    ca: String,
}

/// Airlock with agent `bot`, the shipped catalog and api.github.com mapped to the fake upstream.
async fn setup() -> Setup {
    support::init();
    let up = FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("dir");
    let token = airlock::agents::generate_token();
    let toml =
        airlock::agents::config_block("bot", &airlock::agents::token_digest(&token), &[], None);
    let config = Airlock::config(&toml, dir.path(), &up, &["api.github.com"]);
    let catalog = airlock::rules::LiveCatalog::load(None, Default::default()).expect("catalog");
    let airlock =
        Airlock::start_with_parts(config, dir, catalog, Arc::new(airlock::gate::SystemClock)).await;
    // In the 0700 temp dir on purpose: `airlock run` (root) must copy it for the command.
    let ca = path_str(&airlock.ca_file());
    Setup {
        airlock,
        up,
        token,
        ca,
    }
}

impl Setup {
    fn command(&self, extra: &[&str], script: &str) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.current_dir("/")
            .env_remove("AIRLOCK_CONFIG")
            .env_remove("SUDO_UID")
            .env_remove("SUDO_GID")
            .env("AIRLOCK_AGENT_TOKEN", &self.token)
            .args(["run", "--agent", "bot", "--proxy"])
            .arg(self.airlock.addr.to_string())
            .args(["--ca", &self.ca])
            .args(extra)
            .args(["--", "sh", "-c", script])
            .kill_on_drop(true);
        cmd
    }

    /// Runs `script` under `airlock run`; returns (exit code, stdout, stderr).
    async fn run(&self, extra: &[&str], script: &str) -> (i32, String, String) {
        let out = tokio::time::timeout(
            Duration::from_secs(60),
            self.command(extra, script).output(),
        )
        .await
        .expect("airlock run timed out")
        .expect("spawn airlock");
        let res = (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        eprintln!("airlock run {extra:?}: {res:?}");
        res
    }

    /// False (after printing why) when this kernel refuses to create a network namespace.
    async fn netns_allowed(&self) -> bool {
        let (code, _, err) = self.run(&[], "true").await;
        if code != 0 && err.contains("CAP_NET_ADMIN") {
            eprintln!(
                "SKIPPED: the kernel refused to create a network namespace here \
                 (uid {}): {err}",
                my_uid()
            );
            return false;
        }
        assert_eq!(code, 0, "airlock run -- true failed: {err}");
        true
    }
}

fn my_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(0)
}

/// The first global IPv4 address of this host, if any.
fn host_ip() -> Option<String> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next())
        .map(str::to_string)
}

/// PIDs of processes whose network namespace has inode `ino`.
fn procs_in_netns(ino: u64) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::metadata(format!("/proc/{pid}/ns/net"))
                .map(|m| m.ino() == ino)
                .unwrap_or(false)
        })
        .collect()
}

/// Parses `net:[1234]`.
fn ns_inode(line: &str) -> u64 {
    line.trim()
        .strip_prefix("net:[")
        .and_then(|s| s.strip_suffix(']'))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not a netns link: {line:?}"))
}

fn own_netns() -> u64 {
    std::fs::metadata("/proc/self/ns/net").expect("ns").ino()
}

fn assert_netns_gone(ino: u64) {
    assert_ne!(ino, own_netns(), "the command ran in the host namespace");
    support::eventually_blocking("the sandbox's processes to be gone", support::WAIT, || {
        let left = procs_in_netns(ino);
        if left.is_empty() {
            Ok(())
        } else {
            Err(format!("processes left in the sandbox: {left:?}"))
        }
    });
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip");
    let list = String::from_utf8_lossy(&list.stdout);
    assert!(!list.contains("airlock"), "named namespace left: {list}");
    let leftovers: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("airlock-run-"))
        .collect();
    // Other tests may be running at the same time: only check ours is gone via the namespace;
    // run dirs are named by `airlock run`'s PID, reported for diagnosis only.
    eprintln!("airlock-run dirs now in tmp: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn direct_connections_from_the_sandbox_fail() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    // Something listening on the host's real address, reachable from the host.
    let outside = tokio::net::TcpListener::bind("0.0.0.0:0")
        .await
        .expect("bind");
    let outside_port = outside.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let _ = outside.accept().await;
        }
    });
    let host_ip = host_ip();
    if let Some(ip) = &host_ip {
        tokio::net::TcpStream::connect((ip.as_str(), outside_port))
            .await
            .expect("control: the host address is reachable from the host");
    } else {
        eprintln!("note: no global IPv4 address on this host; probing 127.0.0.1 only");
    }
    let ip = host_ip.clone().unwrap_or_else(|| "127.0.0.1".into());
    let script = format!(
        "curl --noproxy '*' -sk --max-time 5 https://127.0.0.1:{up}/ >/dev/null && echo CURL_DIRECT_OK
         curl --noproxy '*' -sk --max-time 5 --resolve api.github.com:443:{ip} https://api.github.com/ >/dev/null && echo CURL_HOST_OK
         timeout 5 bash -c 'exec 3<>/dev/tcp/{ip}/{outside_port}' 2>/dev/null && echo TCP_HOST_OK
         timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{admin}' 2>/dev/null && echo TCP_ADMIN_OK
         timeout 5 bash -c 'exec 3<>/dev/tcp/127.0.0.1/{up}' 2>/dev/null && echo TCP_UPSTREAM_OK
         echo DONE",
        up = s.up.addr.port(),
        admin = s.airlock.admin_addr.port(),
    );
    let (code, out, err) = s.run(&[], &script).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("DONE"), "{out}");
    assert!(!out.contains("_OK"), "a direct connection worked: {out}");
    assert_eq!(s.up.count(), 0, "the upstream was reached directly");

    // Control: the same probes without the namespace do connect, so the checks above mean
    // something.
    let (code, out, err) = s.run(&["--weak"], &script).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("WARNING"), "--weak must warn: {err}");
    assert!(out.contains("CURL_DIRECT_OK"), "{out}");
    assert!(out.contains("TCP_ADMIN_OK"), "{out}");
    if host_ip.is_some() {
        assert!(out.contains("TCP_HOST_OK"), "{out}");
    }
    assert!(s.up.count() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_the_proxy_a_delete_is_held_and_a_get_passes() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    let script = r#"
        echo "UID=$(id -u) GROUPS=$(id -G)"
        echo "PROXY=$HTTPS_PROXY"
        echo "NOPROXY=${NO_PROXY-unset}${no_proxy-unset}"
        for v in SSL_CERT_FILE REQUESTS_CA_BUNDLE NODE_EXTRA_CA_CERTS; do
            eval f=\$$v; test -r "$f" && echo "$v readable"
        done
        curl -sS --max-time 20 --cacert "$SSL_CERT_FILE" -X DELETE -D - -o /dev/null \
            -w 'STATUS=%{http_code}\n' https://api.github.com/repos/octo/demo
        curl -sS --max-time 20 --cacert "$SSL_CERT_FILE" -o /dev/null \
            -w 'STATUS=%{http_code}\n' https://api.github.com/repos/octo/demo
    "#;
    let (code, out, err) = s.run(&[], script).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("UID=65534 GROUPS=65534\n"), "{out}");
    assert!(out.contains("PROXY=http://bot:"), "{out}");
    assert!(out.contains("@127.0.0.1:"), "{out}");
    assert!(out.contains("NOPROXY=unsetunset"), "{out}");
    for v in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"] {
        assert!(out.contains(&format!("{v} readable")), "{out}");
    }
    assert!(out.contains("STATUS=423"), "DELETE not held: {out}");
    assert!(
        out.to_ascii_lowercase().contains("airlock-review-id:"),
        "{out}"
    );
    assert!(out.contains("STATUS=200"), "GET did not pass: {out}");
    let seen = s.up.requests();
    assert_eq!(seen.len(), 1, "upstream saw {seen:?}");
    assert_eq!(seen[0].method, "GET");

    // A wrong token gets 407 from Airlock: the relay adds no identity of its own.
    let mut cmd = s.command(
        &[],
        "curl -s --max-time 20 --cacert \"$SSL_CERT_FILE\" -o /dev/null -w 'CONNECT=%{http_connect}\\n' https://api.github.com/x; echo",
    );
    cmd.env("AIRLOCK_AGENT_TOKEN", "alk_wrong");
    let out = cmd.output().await.expect("run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("CONNECT=407"),
        "wrong token was not refused: {text}"
    );
    assert_eq!(s.up.count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dns_inside_the_sandbox_does_not_resolve() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    let resolver = std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("nameserver").map(|a| a.trim().to_string()))
        .filter(|a| !a.contains(':'))
        .unwrap_or_else(|| "8.8.8.8".into());
    let script = format!(
        "getent hosts api.github.com && echo RESOLVED
         getent hosts example.com && echo RESOLVED
         timeout 5 bash -c 'echo x > /dev/udp/{resolver}/53' 2>/dev/null && echo UDP_OK
         echo DONE"
    );
    let (code, out, err) = s.run(&[], &script).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("DONE"), "{out}");
    assert!(
        !out.contains("RESOLVED"),
        "DNS worked in the sandbox: {out}"
    );
    assert!(!out.contains("UDP_OK"), "the resolver was reachable: {out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nothing_is_left_after_exit_or_sigterm() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    // Normal exit, with a background process left behind; the exit code is COMMAND's.
    let (code, out, err) = s
        .run(
            &[],
            "readlink /proc/self/ns/net; (sleep 300 >/dev/null 2>&1 &); exit 7",
        )
        .await;
    assert_eq!(code, 7, "{err}");
    assert_netns_gone(ns_inode(out.lines().next().unwrap_or_default()));

    // SIGTERM to `airlock run`: forwarded to COMMAND, then everything is cleaned up.
    let mut child = s
        .command(&[], "readlink /proc/self/ns/net; sleep 300 & wait")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("no output")
        .expect("read")
        .expect("line");
    let ino = ns_inode(&first);
    assert!(!procs_in_netns(ino).is_empty());
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(kill.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("airlock run did not exit after SIGTERM")
        .expect("wait");
    assert_eq!(status.code(), Some(128 + 15), "{status:?}");
    assert_netns_gone(ino);
    let dirs: Vec<_> = std::fs::read_dir(std::env::temp_dir())
        .expect("tmp")
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("airlock-run-{pid}-"))
        })
        .collect();
    assert!(dirs.is_empty(), "run dir left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refusals_without_privilege_or_as_root() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    // Unprivileged: a clear error naming the capability, non-zero, COMMAND never runs.
    let mut cmd = tokio::process::Command::new("setpriv");
    cmd.current_dir("/")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps=-all",
            BIN,
            "run",
            "--proxy",
        ])
        .arg(s.airlock.addr.to_string())
        .args(["--", "sh", "-c", "echo RAN"])
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_AGENT_TOKEN");
    let out = cmd.output().await.expect("setpriv");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    eprintln!("unprivileged: {:?} {stdout} {stderr}", out.status);
    assert!(!out.status.success());
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");
    assert!(!stdout.contains("RAN"));

    // Root as COMMAND is refused unless --allow-root.
    let (code, out, err) = s.run(&["--user", "0"], "echo RAN").await;
    assert_ne!(code, 0);
    assert!(err.contains("--allow-root"), "{err}");
    assert!(!out.contains("RAN"));
    let (code, out, err) = s
        .run(&["--user", "0", "--allow-root"], "id -u; echo RAN")
        .await;
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("0\n") && out.contains("RAN"), "{out}");
}
