//! The review of session 21: who may run `airlock run` and what it lets them reach, what the
//! sandbox still showed or shared (renamed-over files, `/dev/mqueue`, piped output), and where
//! tokens went (loopback listeners of other users). One test per finding.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{setup, unique, Setup, BIN};
use crate::support::path_str;

/// A directory every user may enter, outside /tmp (which the sandbox replaces), removed on drop.
struct OpenDir(PathBuf);

impl OpenDir {
    fn new(prefix: &str) -> OpenDir {
        let target_tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
        let base = if target_tmp.starts_with("/tmp") || target_tmp.starts_with("/var/tmp") {
            PathBuf::from("/var/lib")
        } else {
            target_tmp.to_path_buf()
        };
        let dir = base.join(unique(prefix));
        std::fs::create_dir_all(&dir).expect("mkdir");
        chmod(&dir, 0o755);
        OpenDir(dir)
    }
}

impl Drop for OpenDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn chmod(p: &Path, mode: u32) {
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

fn write(p: &Path, text: &str, mode: u32) {
    std::fs::write(p, text).expect("write");
    chmod(p, mode);
}

impl Setup {
    /// `airlock run` with agent `bot` and this Airlock's proxy, and only `args` besides (no
    /// `--ca`), with `env` set; runs `script`.
    async fn bare(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        script: &str,
    ) -> (i32, String, String) {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.current_dir("/")
            .env_remove("AIRLOCK_CONFIG")
            .env_remove("SUDO_UID")
            .env_remove("SUDO_GID")
            .env("AIRLOCK_AGENT_TOKEN", &self.token)
            .envs(env.iter().copied())
            .args(["run", "--without-config", "--agent", "bot", "--proxy"])
            .arg(self.airlock.addr.to_string())
            .args(args)
            .args(["--", "sh", "-c", script])
            .kill_on_drop(true);
        eprintln!("airlock run {args:?} {env:?}:");
        output(cmd).await
    }
}

async fn output(mut cmd: tokio::process::Command) -> (i32, String, String) {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("timed out")
        .expect("spawn");
    let res = (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    eprintln!("{res:?}");
    res
}

/// Review of session 21: the docs offered file capabilities as an alternative to root, and
/// `run` never checked who called it: a setuid-root or file-capability copy of the binary let
/// `nobody` run `--user 0 --allow-root` and read root's files. Such privilege is now refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_setuid_or_file_capability_copy_refuses_to_run() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    let dir = OpenDir::new("airlock-privileged-copy");
    let secret = dir.0.join("root-only");
    write(&secret, "ROOT-ONLY-CANARY\n", 0o600);
    let ca = dir.0.join("ca.pem");
    std::fs::copy(&s.ca, &ca).expect("copy ca");
    chmod(&ca, 0o644);
    let setuid = dir.0.join("airlock-setuid");
    std::fs::copy(BIN, &setuid).expect("copy");
    chmod(&setuid, 0o4755);
    let caps = dir.0.join("airlock-caps");
    std::fs::copy(BIN, &caps).expect("copy");
    chmod(&caps, 0o755);
    let setcap = std::process::Command::new("setcap")
        .arg("cap_sys_admin,cap_net_admin,cap_setuid,cap_setgid,cap_setpcap,cap_chown+ep")
        .arg(&caps)
        .status()
        .expect("setcap (libcap2-bin) is needed for this test: install it");
    assert!(setcap.success(), "setcap failed");
    for bin in [&setuid, &caps] {
        let mut cmd = tokio::process::Command::new("setpriv");
        cmd.current_dir("/")
            .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
            .arg(bin)
            .args(["run", "--proxy"])
            .arg(s.airlock.addr.to_string())
            .args(["--ca", &path_str(&ca), "--user", "0", "--allow-root", "--"])
            .args([
                "sh",
                "-c",
                &format!("id -u; cat {}; echo RAN", path_str(&secret)),
            ])
            .env_remove("AIRLOCK_CONFIG")
            .env_remove("SUDO_UID")
            .env_remove("AIRLOCK_AGENT_TOKEN")
            .kill_on_drop(true);
        let (code, out, err) = output(cmd).await;
        assert_ne!(code, 0, "{}: {out}", bin.display());
        assert!(!out.contains("RAN"), "{}: {out}", bin.display());
        assert!(!out.contains("ROOT-ONLY-CANARY"), "{out}");
        assert!(
            err.contains("file capabilities or a setuid bit"),
            "{}: {err}",
            bin.display()
        );
    }
}

/// Review of session 21: root through sudo acted for whoever ran sudo with root's powers:
/// `--user 0 --allow-root` ran a root command, and `--token-file`, `--ca` and `--config` read
/// any file as root (the token file's content went into COMMAND's HTTPS_PROXY). Now such
/// options are refused and those files are read with the sudo user's permissions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn run_through_sudo_acts_with_the_sudo_users_rights() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    let dir = OpenDir::new("airlock-sudo");
    let secret = dir.0.join("root-only");
    write(&secret, "ROOT-ONLY-CANARY\n", 0o600);
    let fake_ca = dir.0.join("root-only-ca.pem");
    write(
        &fake_ca,
        "-----BEGIN CERTIFICATE-----\nROOT-ONLY-CANARY\n-----END CERTIFICATE-----\n",
        0o600,
    );
    let config = dir.0.join("root-only.toml");
    write(&config, "ROOT-ONLY-CANARY = = \n", 0o600);
    let ca = dir.0.join("ca.pem");
    std::fs::copy(&s.ca, &ca).expect("copy ca");
    chmod(&ca, 0o644);
    let ca = path_str(&ca);
    let sudo = [
        ("SUDO_UID", "65534"),
        ("SUDO_GID", "65534"),
        ("SUDO_USER", "nobody"),
    ];
    let show = "id -u; echo \"$HTTPS_PROXY\"; cat \"$AIRLOCK_CA_FILE\"; echo RAN";
    // Control: a run for the sudo user with files she may read works.
    let (code, out, err) = s.bare(&["--ca", &ca], &sudo, "id -u; echo RAN").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("RAN"), "{out}");
    let cases: Vec<Vec<String>> = vec![
        vec!["--user".into(), "0".into(), "--allow-root".into()],
        vec!["--user".into(), "0:0".into()],
        vec!["--weak".into()],
        vec!["--token-file".into(), path_str(&secret)],
        vec!["--ca".into(), path_str(&fake_ca)],
        vec!["--config".into(), path_str(&config)],
    ];
    for case in cases {
        let mut extra: Vec<&str> = vec!["--ca", &ca];
        extra.extend(case.iter().map(String::as_str));
        let (code, out, err) = s.bare(&extra, &sudo, show).await;
        assert_ne!(code, 0, "{case:?} ran: {out}");
        assert!(!out.contains("RAN"), "{case:?}: {out}");
        assert!(
            !out.contains("ROOT-ONLY-CANARY") && !err.contains("ROOT-ONLY-CANARY"),
            "{case:?} read a root-only file: {out} {err}"
        );
    }
}

fn chown(p: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(p, Some(uid), Some(gid)).expect("chown");
}

/// A config in `dir/etc` naming a store, certs, an agents file and a rules directory in `dir`;
/// returns the config's path.
fn config_in(dir: &Path) -> PathBuf {
    for d in ["etc", "data", "certs", "rules"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
        chmod(&dir.join(d), 0o755);
    }
    let config = dir.join("etc/airlock.toml");
    write(&dir.join("etc/agents.toml"), "", 0o644);
    write(
        &config,
        &format!(
            "agents_file = {:?}\n[store]\npath = {:?}\n[tls]\nca_dir = {:?}\n[rules]\ndir = {:?}\n",
            path_str(&dir.join("etc/agents.toml")),
            path_str(&dir.join("data")),
            path_str(&dir.join("certs")),
            path_str(&dir.join("rules")),
        ),
        0o644,
    );
    config
}

/// Review of session 21: `--user` took the uid that owns Airlock's config, agents file and
/// rules, so COMMAND could delete rules and add an `[[agents]]` entry that `serve` reloads. A
/// uid that owns them, or whose gid may write them, is now refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_user_that_owns_airlocks_files_is_refused() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    let dir = OpenDir::new("airlock-owned");
    let config = path_str(&config_in(&dir.0));
    let ca = dir.0.join("ca.pem");
    std::fs::copy(&s.ca, &ca).expect("copy ca");
    chmod(&ca, 0o644);
    let ca = path_str(&ca);
    for p in ["etc", "etc/airlock.toml", "etc/agents.toml", "rules"] {
        chown(&dir.0.join(p), 4242, 4242);
    }
    let script = "echo '[[agents]]' >> \"$0\" && echo APPENDED; echo RAN";
    let agents = path_str(&dir.0.join("etc/agents.toml"));
    let run = |user: &'static str| {
        let (config, ca, agents) = (config.clone(), ca.clone(), agents.clone());
        let s = &s;
        async move {
            let args = ["--config", &config, "--ca", &ca, "--user", user];
            let script = script.replace("$0", &agents);
            s.bare(&args, &[], &script).await
        }
    };
    let (code, out, err) = run("4242").await;
    assert_ne!(code, 0, "the owner of the config ran: {out}");
    assert!(!out.contains("RAN") && !out.contains("APPENDED"), "{out}");
    assert!(err.contains("refusing --user 4242:4242"), "{err}");
    // A group with write access to the rules is refused the same way.
    for p in ["etc", "etc/airlock.toml", "etc/agents.toml", "rules"] {
        chown(&dir.0.join(p), 0, 0);
    }
    chown(&dir.0.join("rules"), 0, 4242);
    chmod(&dir.0.join("rules"), 0o775);
    let (code, out, err) = run("4243:4242").await;
    assert_ne!(code, 0, "a group that may write the rules ran: {out}");
    assert!(err.contains("gid 4242 may write"), "{err}");
    // Control: another uid runs.
    chmod(&dir.0.join("rules"), 0o755);
    let (code, out, err) = run("4243:4243").await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("RAN") && !out.contains("APPENDED"), "{out}");
}

/// Review of session 21: with no config found (`sudo` resets $HOME and $AIRLOCK_*, and the CA
/// error said "pass --ca"), `run` fell back to the built-in defaults and hid none of the real
/// `airlock serve`'s files, silently. It now refuses unless `--config` or `--without-config`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_a_config_file_run_refuses_unless_told() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    let home = OpenDir::new("airlock-empty-home");
    let run = |extra: &'static [&'static str]| {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.current_dir("/")
            .env("HOME", &home.0)
            .env_remove("AIRLOCK_CONFIG")
            .env_remove("AIRLOCK_HOME")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SUDO_UID")
            .env("AIRLOCK_AGENT_TOKEN", &s.token)
            .args(["run", "--agent", "bot", "--proxy"])
            .arg(s.airlock.addr.to_string())
            .args(["--ca", &s.ca])
            .args(extra)
            .args(["--", "sh", "-c", "echo RAN"])
            .kill_on_drop(true);
        output(cmd)
    };
    let (code, out, err) = run(&[]).await;
    assert_ne!(code, 0, "ran without a config: {out}");
    assert!(!out.contains("RAN"), "{out}");
    assert!(
        err.contains("no config file found") && err.contains("--config"),
        "{err}"
    );
    let (code, out, err) = run(&["--without-config"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("RAN"), "{out}");
}

/// Review of session 21: `/dev/mqueue` was the host's (world-writable, like /dev/shm): a queue
/// COMMAND created there outlived the run. The sandbox mounts its own IPC namespace's queues
/// there now.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_queues_are_the_sandboxs_own() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    let name = unique("airlock-mq");
    // The host side runs in a mount namespace of its own, with the host IPC namespace's queues
    // mounted on /dev/mqueue (made here when this machine has none, removed afterwards).
    let made = !Path::new("/dev/mqueue").exists();
    if made {
        std::fs::create_dir("/dev/mqueue").expect("mkdir /dev/mqueue");
    }
    let script = format!(
        r#"mount -t mqueue mqueue /dev/mqueue || exit 97
"$0" "$@" -- sh -c 'touch /dev/mqueue/{name} && echo CREATED'
echo "RUN_EXIT=$?"
ls /dev/mqueue | grep -qx {name} && echo PERSISTED
rm -f /dev/mqueue/{name}"#
    );
    let mut cmd = tokio::process::Command::new("unshare");
    cmd.current_dir("/")
        .args([
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            &script,
            BIN,
        ])
        .args(s.run_args(&[]))
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("SUDO_UID")
        .env("AIRLOCK_AGENT_TOKEN", &s.token)
        .kill_on_drop(true);
    let (code, out, err) = output(cmd).await;
    if made {
        let _ = std::fs::remove_dir("/dev/mqueue");
    }
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("CREATED") && out.contains("RUN_EXIT=0"),
        "{out} {err}"
    );
    assert!(
        !out.contains("PERSISTED"),
        "a queue made in the sandbox is on the host: {out}"
    );
}

/// Review of session 21: only terminal descriptors went through the pty and its filter, so
/// with a terminal on stdin and stdout piped (`airlock run -- … | tee log`) an OSC 52
/// clipboard write reached the terminal through `tee`. A piped stdout or stderr is now relayed
/// through the filter whenever any of fds 0–2 is a terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn piped_output_is_filtered_when_a_terminal_is_there() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    let dir = tempfile::tempdir().expect("dir");
    let outer = dir.path().join("outer.sh");
    write(
        &outer,
        "\"$BIN\" \"$@\" -- sh -c \"$INNER\" | cat\necho \"RUN_EXIT=$?\"\n",
        0o755,
    );
    let inner = r"printf 'PIPED\033]52;c;SGVsbG8=\007END\n'; printf 'TEXT\n'";
    let mut cmd = tokio::process::Command::new("script");
    cmd.current_dir("/")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("SUDO_UID")
        .env("AIRLOCK_AGENT_TOKEN", &s.token)
        .env("BIN", BIN)
        .env("INNER", inner)
        .arg("-qec")
        .arg(format!(
            "bash {} {}",
            path_str(&outer),
            s.run_args(&[]).join(" ")
        ))
        .arg("/dev/null")
        // An open pipe, never written: stdin is script's terminal, no EOF reaches it.
        .stdin(std::process::Stdio::piped())
        .kill_on_drop(true);
    let (code, out, err) = output(cmd).await;
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("RUN_EXIT=0") && out.contains("TEXT"),
        "{out:?}"
    );
    assert!(
        out.contains("PIPEDEND"),
        "the text around it is kept: {out:?}"
    );
    assert!(
        !out.contains("\x1b]52"),
        "an OSC 52 clipboard write passed through a pipe: {out:?}"
    );
}

/// Review of session 21: `airlock reviews --token TOKEN` put a reviewer's token in
/// /proc/PID/cmdline, readable by every local user. `--token` is refused now, naming
/// `--token-file` (checked private) and `$AIRLOCK_REVIEWER_TOKEN`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn reviewer_tokens_stay_off_the_command_line() {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("reviewer-token");
    write(&file, "rvw_not_a_real_token\n", 0o644);
    let reviews = |args: Vec<String>| {
        let mut cmd = tokio::process::Command::new(BIN);
        cmd.current_dir(dir.path())
            .env("AIRLOCK_HOME", dir.path())
            .env_remove("AIRLOCK_CONFIG")
            .env_remove("AIRLOCK_REVIEWER_TOKEN")
            .env_remove("AIRLOCK_ADMIN_TOKEN")
            .arg("reviews")
            .args(args)
            .arg("list")
            .kill_on_drop(true);
        output(cmd)
    };
    let (code, _, err) = reviews(vec!["--token".into(), "rvw_secret".into()]).await;
    assert_ne!(code, 0);
    assert!(
        err.contains("--token is refused") && err.contains("--token-file"),
        "{err}"
    );
    // A token file others may read is refused too.
    let (code, _, err) = reviews(vec!["--token-file".into(), path_str(&file)]).await;
    assert_ne!(code, 0);
    assert!(err.contains("mode 644"), "{err}");
}

/// Review of session 21: `--token-file` read any file (others could read it too) and was not
/// hidden inside the sandbox, and the docs put the token on sudo's command line. The file must
/// now be private (0600, root's) and its directory is covered inside.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_token_file_is_private_and_hidden() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    let dir = OpenDir::new("airlock-token-file");
    let tokens = dir.0.join("tokens");
    std::fs::create_dir(&tokens).expect("mkdir");
    chmod(&tokens, 0o755);
    let file = tokens.join("bot");
    let ca = dir.0.join("ca.pem");
    std::fs::copy(&s.ca, &ca).expect("copy ca");
    chmod(&ca, 0o644);
    let (ca, file_s) = (path_str(&ca), path_str(&file));
    let script = format!(
        "ls -a {} 2>&1 | tr '\\n' ' '; echo; echo RAN",
        path_str(&tokens)
    );
    // Others may read it: refused.
    write(&file, &format!("{}\n", s.token), 0o644);
    let args = ["--ca", ca.as_str(), "--token-file", file_s.as_str()];
    let no_env = [("AIRLOCK_AGENT_TOKEN", "")];
    let (code, out, err) = s.bare(&args, &no_env, &script).await;
    assert_ne!(code, 0, "a token file others may read was taken: {out}");
    assert!(
        err.contains("--token-file") && err.contains("mode 644"),
        "{err}"
    );
    // Private: taken, and its directory shows nothing inside.
    chmod(&file, 0o600);
    let (code, out, err) = s.bare(&args, &no_env, &script).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("RAN"), "{out}");
    assert!(
        !out.contains(" bot "),
        "the token file is visible inside: {out}"
    );
}

/// A listener on 127.0.0.1 owned by uid 65534 (another local user holding a port Airlock uses
/// while it is down) that prints every byte it receives: the process, its port, and what it
/// printed once it is killed.
async fn squatter() -> (
    tokio::process::Child,
    u16,
    tokio::sync::oneshot::Receiver<String>,
) {
    use tokio::io::AsyncBufReadExt;
    let py = "import socket\n\
              s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(8)\n\
              print(s.getsockname()[1], flush=True)\n\
              while True:\n    c, _ = s.accept(); c.settimeout(3)\n    \
              try:\n        print('GOT', c.recv(65536), flush=True)\n    \
              except OSError:\n        pass\n    \
              c.close()\n";
    let mut child = tokio::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups"])
        .args([super::python(), "-c", py])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("setpriv");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let port = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("no port")
        .expect("read")
        .and_then(|l| l.trim().parse().ok())
        .expect("port");
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        let mut seen = String::new();
        while let Ok(Some(l)) = lines.next_line().await {
            seen.push_str(&l);
            seen.push('\n');
        }
        let _ = tx.send(seen);
    });
    (child, port, rx)
}

/// What the squatter got, once stopped.
async fn squatter_got(
    mut child: tokio::process::Child,
    rx: tokio::sync::oneshot::Receiver<String>,
) -> String {
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = child.kill().await;
    tokio::time::timeout(Duration::from_secs(10), rx)
        .await
        .expect("squatter output")
        .unwrap_or_default()
}

/// Review of session 21: the relay sent COMMAND's connections, agent token included, to
/// whatever listened on the proxy's loopback address; another local user holding that port
/// (Airlock down or restarting) got the token. A listener not owned by root or Airlock's user
/// is now refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_relay_sends_nothing_to_another_users_listener() {
    let s = setup().await;
    if !s.netns_allowed().await {
        return;
    }
    let (child, port, rx) = squatter().await;
    let proxy = format!("127.0.0.1:{port}");
    let script = "curl -s --max-time 5 -o /dev/null https://api.github.com/x; echo RAN";
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.current_dir("/")
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("SUDO_UID")
        .env("AIRLOCK_AGENT_TOKEN", &s.token)
        .args([
            "run",
            "--without-config",
            "--agent",
            "bot",
            "--proxy",
            &proxy,
        ])
        .args(["--ca", &s.ca, "--", "sh", "-c", script])
        .kill_on_drop(true);
    let (code, out, err) = output(cmd).await;
    let got = squatter_got(child, rx).await;
    eprintln!("squatter got: {got}");
    use base64::Engine as _;
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("bot:{}", s.token));
    assert!(
        !got.contains(&s.token) && !got.contains(&basic),
        "the agent token reached uid 65534's listener: {got}"
    );
    assert_ne!(code, 0, "ran against another user's listener: {out}");
    assert!(err.contains("held by uid 65534"), "{err}");
}

/// Review of session 21: the CLI fell back to TCP and sent the admin (or a reviewer's) token to
/// whatever held `admin.listen` on loopback. A listener not owned by root, the caller or the
/// owner of Airlock's store or admin token is now refused before anything is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_cli_sends_no_token_to_another_users_listener() {
    let (child, port, rx) = squatter().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("airlock.toml");
    write(
        &config,
        &format!(
            "[admin]\nlisten = \"127.0.0.1:{port}\"\nsocket = \"\"\n[store]\npath = {:?}\n",
            path_str(&dir.path().join("data"))
        ),
        0o600,
    );
    let canary = unique("ADMIN-CANARY-of-at-least-32-chars");
    let mut cmd = tokio::process::Command::new(BIN);
    cmd.current_dir("/")
        .env("AIRLOCK_ADMIN_TOKEN", &canary)
        .env_remove("AIRLOCK_REVIEWER_TOKEN")
        .args(["--config", &path_str(&config), "reviews", "list"])
        .kill_on_drop(true);
    let (code, _, err) = output(cmd).await;
    let got = squatter_got(child, rx).await;
    eprintln!("squatter got: {got}");
    assert!(
        !got.contains(&canary),
        "the admin token reached uid 65534's listener: {got}"
    );
    assert_ne!(code, 0);
    assert!(err.contains("held by uid 65534"), "{err}");
}
