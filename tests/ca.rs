//! The interception CA: created once (key 0600 in a 0700 directory, whatever the umask), reused
//! across restarts, exported by the CLI; minted leaves carry the right SAN, random serials and a
//! validity under 398 days.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use airlock::tls::{CertificateAuthority, LeafCache};
use x509_parser::prelude::*;

fn airlock_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_airlock"))
}

/// `airlock ARGS --ca-dir CERTS` run in `dir`: success, stdout, stderr.
fn ca_cli(dir: &std::path::Path, certs: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = airlock_bin()
        .args(args)
        .arg("--ca-dir")
        .arg(certs)
        .current_dir(dir)
        .output()
        .expect("run airlock");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ca_init_creates_once_and_export_prints_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let run = |args: &[&str]| {
        let out = airlock_bin()
            .args(args)
            .arg("--ca-dir")
            .arg(&certs)
            .current_dir(dir.path())
            .output()
            .expect("run airlock");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(run(&["ca", "init"]).contains("CA created"));
    let pem = std::fs::read_to_string(certs.join("ca.pem")).expect("ca.pem");
    let mode = std::fs::metadata(certs.join("ca-key.pem"))
        .expect("key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "CA key must be private");
    assert!(run(&["ca", "init"]).contains("already present"));
    assert_eq!(
        std::fs::read_to_string(certs.join("ca.pem")).expect("pem"),
        pem
    );
    let exported = run(&["ca", "export"]);
    assert_eq!(exported, pem);
    assert!(!exported.contains("PRIVATE KEY"));
}

#[test]
fn ca_export_without_ca_fails_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = airlock_bin()
        .args(["ca", "export", "--ca-dir"])
        .arg(dir.path().join("none"))
        .output()
        .expect("run");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ca init"), "{err}");
}

/// Whoever reads the CA key can intercept every agent: a key other users could read, or that
/// is not a regular file, is refused at load with the file named and `chmod 600`.
#[test]
fn a_ca_key_others_could_read_is_refused() {
    use std::os::unix::fs::PermissionsExt as _;
    support::init();
    let dir = tempfile::tempdir().expect("tempdir");
    CertificateAuthority::create(dir.path()).expect("create");
    let key = dir.path().join("ca-key.pem");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = CertificateAuthority::load(dir.path()).expect_err("0644 key");
    let text = err.to_string();
    assert!(
        text.contains("ca-key.pem") && text.contains("chmod 600"),
        "{text}"
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    CertificateAuthority::load(dir.path()).expect("0600 key loads");
    std::fs::rename(&key, dir.path().join("moved")).expect("mv");
    std::fs::create_dir(&key).expect("a directory in its place");
    let err = CertificateAuthority::load(dir.path()).expect_err("not a file");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}

/// Writes a self-signed certificate from `params` and its key into `dir` as a CA would be.
fn write_ca(dir: &std::path::Path, params: rcgen::CertificateParams) {
    let key = rcgen::KeyPair::generate().expect("key");
    let cert = params.self_signed(&key).expect("self-sign");
    std::fs::write(dir.join("ca.pem"), cert.pem()).expect("cert");
    support::write_secret(&dir.join("ca-key.pem"), key.serialize_pem());
}

fn ca_params(days_from: i64, days_until: i64) -> rcgen::CertificateParams {
    let mut p = rcgen::CertificateParams::default();
    p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
    p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let now = ::time::OffsetDateTime::now_utc();
    p.not_before = now + ::time::Duration::days(days_from);
    p.not_after = now + ::time::Duration::days(days_until);
    p
}

/// A CA that would make every agent's TLS fail (a key from another CA, an expired or
/// not-yet-valid certificate, one that may not sign certificates) is refused at load, with
/// the reason; a CA near its end still loads, and its leaves never outlive it.
#[test]
fn a_ca_that_cannot_sign_valid_leaves_is_refused() {
    support::init();
    let other = tempfile::tempdir().expect("tempdir");
    CertificateAuthority::create(other.path()).expect("create");
    let other_key = other.path().join("ca-key.pem");
    let mut not_ca = ca_params(-1, 30);
    not_ca.is_ca = rcgen::IsCa::ExplicitNoCa;
    let mut no_cert_sign = ca_params(-1, 30);
    no_cert_sign.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    type Setup = Box<dyn Fn(&std::path::Path)>;
    let cases: Vec<(&str, Setup, &str)> = vec![
        (
            "key of another CA",
            Box::new(move |dir| {
                CertificateAuthority::create(dir).expect("create");
                std::fs::copy(&other_key, dir.join("ca-key.pem")).expect("copy key");
            }),
            "is not this certificate's key",
        ),
        (
            "expired",
            Box::new(|dir| write_ca(dir, ca_params(-400, -1))),
            "the CA expired on",
        ),
        (
            "not yet valid",
            Box::new(|dir| write_ca(dir, ca_params(2, 400))),
            "not valid before",
        ),
        (
            "not a CA",
            Box::new(move |dir| write_ca(dir, not_ca.clone())),
            "not a CA certificate",
        ),
        (
            "no keyCertSign",
            Box::new(move |dir| write_ca(dir, no_cert_sign.clone())),
            "not a CA certificate",
        ),
    ];
    for (name, setup, expected) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        setup(dir.path());
        let err = CertificateAuthority::load(dir.path()).expect_err(name);
        let text = err.to_string();
        assert!(
            text.contains(expected) && text.contains("ca.pem"),
            "{name}: {text}"
        );
    }

    let dir = tempfile::tempdir().expect("tempdir");
    write_ca(dir.path(), ca_params(-1, 10));
    let ca = CertificateAuthority::load(dir.path()).expect("ten days left: loads");
    let (_, ca_cert) = X509Certificate::from_der(ca.cert_der().as_ref()).expect("parse");
    let leaf = ca.mint_leaf("api.github.com").expect("mint");
    let (_, leaf) = X509Certificate::from_der(leaf.cert[0].as_ref()).expect("parse");
    assert!(
        leaf.validity().not_after.timestamp() <= ca_cert.validity().not_after.timestamp(),
        "a leaf outlived its CA"
    );
}

#[test]
fn half_a_ca_is_refused_not_overwritten() {
    support::init();
    let dir = tempfile::tempdir().expect("tempdir");
    CertificateAuthority::create(dir.path()).expect("create");
    std::fs::remove_file(dir.path().join("ca-key.pem")).expect("rm");
    let err = CertificateAuthority::load_or_create(dir.path()).expect_err("must refuse");
    assert!(err.to_string().contains("ca-key.pem"), "{err}");
    assert!(
        dir.path().join("ca.pem").exists(),
        "existing cert untouched"
    );
}

/// Review of session 22: a full disk during `airlock ca init` left the key beside a 0-byte
/// (or cut short) `ca.pem`: the certificate was written in place, and every later `ca init` and
/// `serve` failed with "not a usable CA certificate". Now the certificate is written under a
/// temporary name and linked into place like the key, and when it cannot be written the key
/// just made is removed, so a retry with room creates the CA. The full disk is a file-size
/// limit (RLIMIT_FSIZE) between the key's size and the certificate's: the key fits, the
/// certificate does not.
#[test]
fn a_ca_init_cut_short_by_a_full_disk_leaves_nothing_behind() {
    use std::os::unix::process::CommandExt as _;
    let dir = tempfile::tempdir().expect("tempdir");
    // The sizes of a CA's two files, from one made without a limit.
    let sample = dir.path().join("sample");
    let (ok, _, err) = ca_cli(dir.path(), &sample, &["ca", "init"]);
    assert!(ok, "{err}");
    let size = |name: &str| std::fs::metadata(sample.join(name)).expect(name).len();
    let (key, cert) = (size("ca-key.pem"), size("ca.pem"));
    assert!(key + 64 < cert, "key {key} bytes, certificate {cert}");
    let limit = (key + cert) / 2;

    let certs = dir.path().join("certs");
    let mut cmd = airlock_bin();
    cmd.args(["ca", "init", "--ca-dir"])
        .arg(&certs)
        .current_dir(dir.path());
    // SAFETY: between fork and exec only setrlimit and signal, both async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            let lim = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // A write past the limit fails with EFBIG instead of killing the process.
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }
    let out = cmd.output().expect("run airlock");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "created under the limit: {err}");
    assert!(err.contains("ca.pem"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&certs)
        .expect("certs")
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");

    let (ok, out, err) = ca_cli(dir.path(), &certs, &["ca", "init"]);
    assert!(ok && out.contains("CA created"), "{out}{err}");
}

/// Issue 20 item 4 (and the CA's part of it): under the usual umask 022, `airlock ca init` and
/// `airlock serve` create the certs directory (and its missing parents) 0700 and the CA key 0600,
/// and serve's data directory 0700 with its admin token 0600; the certificate stays readable.
#[test]
fn ca_and_data_directories_are_private_whatever_the_umask() {
    use std::io::BufRead;
    use std::os::unix::process::CommandExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let with_umask = |cmd: &mut Command| {
        // SAFETY: umask is async-signal-safe and only affects the child.
        unsafe {
            cmd.pre_exec(|| {
                libc::umask(0o022);
                Ok(())
            });
        }
    };

    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("state/certs");
    let mut init = airlock_bin();
    init.args(["ca", "init", "--ca-dir"])
        .arg(&certs)
        .current_dir(dir.path())
        .env_remove("AIRLOCK_CONFIG");
    with_umask(&mut init);
    let out = init.output().expect("run airlock");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&dir.path().join("state")), 0o700);
    assert_eq!(mode(&certs), 0o700);
    assert_eq!(mode(&certs.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&certs.join("ca.pem")), 0o644);

    let dir = tempfile::tempdir().expect("tempdir");
    let (certs, data) = (dir.path().join("certs"), dir.path().join("data"));
    let mut serve = airlock_bin();
    serve
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--admin-listen",
            "127.0.0.1:0",
            "--ca-dir",
        ])
        .arg(&certs)
        .arg("--data-dir")
        .arg(&data)
        .current_dir(dir.path())
        .env_remove("AIRLOCK_CONFIG")
        .env_remove("AIRLOCK_ADMIN_TOKEN")
        .env("AIRLOCK_LOG", "warn")
        .stdout(std::process::Stdio::piped());
    with_umask(&mut serve);
    let mut child = serve.spawn().expect("spawn airlock serve");
    let stdout = child.stdout.take().expect("stdout");
    let up = std::io::BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|l| l.starts_with("airlock: admin API on"));
    let _ = child.kill();
    let _ = child.wait();
    assert!(up, "airlock serve did not start");
    assert_eq!(mode(&certs), 0o700);
    assert_eq!(mode(&certs.join("ca-key.pem")), 0o600);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("admin-token")), 0o600);
}

#[tokio::test]
async fn serve_reuses_the_ca_across_restarts() {
    support::init();
    let up = support::FakeUpstream::start(Default::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut pems = Vec::new();
    for _ in 0..2 {
        let mut config = airlock::config::Config::from_toml("t", "").expect("config");
        config.proxy.listen = "127.0.0.1:0".parse().expect("addr");
        config.tls.ca_dir = dir.path().join("certs");
        config.upstream.extra_ca_files.push(up.ca_file.clone());
        let keep = tempfile::tempdir().expect("tmp");
        config.store.path = keep.path().join("data");
        config.admin.listen = "127.0.0.1:0".parse().expect("addr");
        config.admin.token_file = keep.path().join("token");
        let a = support::Airlock::start_with(config, keep).await;
        pems.push(a.ca_pem.clone());
        a.stop().await;
    }
    assert_eq!(
        pems[0], pems[1],
        "second start must load, not regenerate, the CA"
    );
}

#[test]
fn leaves_have_san_random_serial_and_short_validity() {
    support::init();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = CertificateAuthority::create(dir.path()).expect("ca");
    let mut serials = Vec::new();
    for host in ["api.github.com", "api.github.com", "127.0.0.1", "::1"] {
        let key = ca.mint_leaf(host).expect("mint");
        let der = key.cert.first().expect("leaf");
        let (_, cert) = X509Certificate::from_der(der.as_ref()).expect("parse");
        let v = cert.validity();
        let days = (v.not_after.timestamp() - v.not_before.timestamp()) / 86_400;
        assert!(days <= 398, "validity {days} days");
        let san = cert
            .subject_alternative_name()
            .expect("ext")
            .expect("san present");
        let names: Vec<String> = san
            .value
            .general_names
            .iter()
            .map(|n| match n {
                GeneralName::DNSName(d) => d.to_string(),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string(),
                    16 => {
                        let mut b = [0u8; 16];
                        b.copy_from_slice(ip);
                        std::net::Ipv6Addr::from(b).to_string()
                    }
                    _ => "?".into(),
                },
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(names, vec![host.to_string()]);
        assert!(!cert.is_ca());
        serials.push(cert.raw_serial().to_vec());
    }
    serials.sort();
    serials.dedup();
    assert_eq!(serials.len(), 4, "serials must be random and distinct");
}

#[test]
fn leaf_cache_is_bounded_and_hits() {
    support::init();
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = std::sync::Arc::new(CertificateAuthority::create(dir.path()).expect("ca"));
    let cache = LeafCache::new(ca, std::num::NonZeroUsize::new(2).expect("nz"));
    let a1 = cache.server_config("a.test").expect("a");
    let a2 = cache.server_config("a.test").expect("a");
    assert!(
        std::sync::Arc::ptr_eq(&a1, &a2),
        "second lookup is a cache hit"
    );
    cache.server_config("b.test").expect("b");
    cache.server_config("c.test").expect("c");
    assert_eq!(cache.len(), 2);
    let a3 = cache.server_config("a.test").expect("a");
    assert!(
        !std::sync::Arc::ptr_eq(&a1, &a3),
        "evicted entry is re-minted"
    );
    assert!(cache.server_config("bad host!").is_err());
}

/// Review of session 21: replacing the CA meant deleting it and restarting, so agents trusted
/// the old certificate alone until each got the new one, and nothing could intercept for
/// them meanwhile. `airlock ca rotate` prepares the next CA (export prints both), `--finish`
/// puts it in place and removes the old key; a finish a crash interrupted is completed by
/// running it again, and no start creates a third CA over it.
#[test]
fn the_ca_rotates_with_an_overlap_and_survives_an_interrupted_finish() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let run = |args: &[&str]| ca_cli(dir.path(), &certs, args);
    assert!(run(&["ca", "init"]).0);
    let old = std::fs::read_to_string(certs.join("ca.pem")).expect("ca.pem");
    let (ok, out, err) = run(&["ca", "rotate"]);
    assert!(ok, "{err}");
    assert!(out.contains("next CA created"), "{out}");
    let new = std::fs::read_to_string(certs.join("next/ca.pem")).expect("next");
    assert_ne!(new, old);
    let mode = std::fs::metadata(certs.join("next/ca-key.pem"))
        .expect("next key")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Meanwhile agents get both, the one in use first.
    let (ok, bundle, note) = run(&["ca", "export"]);
    assert!(ok);
    assert_eq!(bundle, format!("{old}{new}"));
    assert!(note.contains("next CA is prepared"), "{note}");
    let (ok, _, err) = run(&["ca", "rotate"]);
    assert!(!ok && err.contains("already prepared"), "{err}");

    // A finish cut short after the old CA moved aside: no start makes a third CA over it.
    std::fs::create_dir(certs.join("retired")).expect("retired");
    for f in ["ca.pem", "ca-key.pem"] {
        std::fs::rename(certs.join(f), certs.join("retired").join(f)).expect("move");
    }
    let (ok, _, err) = run(&["ca", "init"]);
    assert!(!ok && err.contains("left half done"), "{err}");
    assert!(!certs.join("ca.pem").exists());

    // Running finish completes it: the new CA in place, the old key gone, its certificate kept.
    let (ok, out, err) = run(&["ca", "rotate", "--finish"]);
    assert!(ok, "{err}");
    assert!(out.contains("restart `airlock serve`"), "{out}");
    assert_eq!(
        std::fs::read_to_string(certs.join("ca.pem")).expect("ca"),
        new
    );
    assert!(
        CertificateAuthority::load(&certs).is_ok(),
        "the key matches"
    );
    assert!(!certs.join("retired/ca-key.pem").exists());
    assert!(!certs.join("next").exists());
    assert_eq!(
        std::fs::read_to_string(certs.join("retired/ca.pem")).expect("retired"),
        old
    );
    assert_eq!(run(&["ca", "export"]).1, new);
    let (ok, _, err) = run(&["ca", "rotate", "--finish"]);
    assert!(!ok && err.contains("no next CA is prepared"), "{err}");
}

/// A `ca rotate` cut short (the next CA's key written, its certificate not) leaves the CA in use
/// serving; the next `ca rotate` says what to do rather than calling it prepared.
#[test]
fn a_half_made_next_ca_leaves_the_current_one_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let certs = dir.path().join("certs");
    let run = |args: &[&str]| ca_cli(dir.path(), &certs, args);
    assert!(run(&["ca", "init"]).0);
    let current = std::fs::read_to_string(certs.join("ca.pem")).expect("ca.pem");
    std::fs::create_dir(certs.join("next")).expect("next");
    std::fs::copy(certs.join("ca-key.pem"), certs.join("next/ca-key.pem")).expect("key");
    let (ok, out, err) = run(&["ca", "init"]);
    assert!(ok && out.contains("already present"), "{out}{err}");
    assert_eq!(run(&["ca", "export"]).1, current);
    let (ok, _, err) = run(&["ca", "rotate"]);
    assert!(!ok && err.contains("not fully created"), "{err}");
}
