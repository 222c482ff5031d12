//! Provider credentials: loaded from the environment or a file named in config (never from the
//! agent; a file must be Airlock's user's and readable by it alone), injected into requests to
//! the service's hosts after stripping whatever credential headers the agent sent, and used to
//! scrub responses (see [`scrub`]).
//!
//! A secret never leaves this module except inside the outgoing upstream request header.

pub mod echo;
pub mod redact;
pub mod scrub;
pub mod seal;

use std::sync::{Arc, RwLock};

use http::{HeaderMap, HeaderName, HeaderValue};

use crate::config::{CredentialConfig, SecretSource};
pub use scrub::Scrubber;

/// Headers an agent might use to carry its own credential; removed on credentialed hosts.
const AGENT_CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "cookie",
    "x-api-key",
    "x-github-token",
    "x-auth-token",
    "private-token",
];

#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("credentials.{service}: environment variable {var} is not set or empty")]
    MissingEnv { service: String, var: String },
    #[error("credentials.{service}: cannot read {file}: {message}")]
    File {
        service: String,
        file: String,
        message: String,
    },
    #[error("credentials.{service}: the secret is empty or not usable in a header")]
    Unusable { service: String },
}

/// A service's credential as configured: where it applies and which headers it strips.
struct Service {
    config: CredentialConfig,
}

/// A service's secret as last read, in the headers it is sent in.
struct Values {
    value: HeaderValue,
    /// The `Authorization: Basic …` value git smart-HTTP hosts get.
    git_value: HeaderValue,
}

/// The secrets in force, swapped whole by [`Vault::reload`].
#[derive(Default)]
struct Secrets {
    /// One per service, in [`Vault::services`] order.
    values: Vec<Values>,
    /// Per service: the raw secret and its git Basic form, as read.
    raw: Vec<Forms>,
    /// Per service: the forms of the secrets it had before in this process, newest first, at
    /// most [`RETIRED_KEPT`] secrets' worth.
    retired: Vec<Forms>,
    /// Masks the secrets in force and the retired ones (a rotated-out token may still work).
    scrubber: Option<Scrubber>,
}

/// The forms one service's secret takes in a request (raw, git Basic).
type Forms = Vec<Vec<u8>>;

/// How many replaced secrets per service the scrubber keeps masking.
const RETIRED_KEPT: usize = 8;

impl Secrets {
    fn new(values: Vec<Values>, raw: Vec<Forms>, retired: Vec<Forms>) -> Secrets {
        let masked = raw.iter().chain(&retired).flatten().cloned().collect();
        Secrets {
            values,
            raw,
            retired,
            scrubber: Scrubber::new(masked),
        }
    }
}

/// User name git hosting expects with a token in HTTP Basic (`x-access-token:TOKEN`).
const GIT_TOKEN_USER: &str = "x-access-token";

/// Every configured service credential, loaded. `Debug` never shows a secret.
///
/// The secrets are read again by [`Vault::reload`] (SIGHUP, or a credential file changed:
/// `server.rs`); the services and their hosts are the config's and never change.
#[derive(Default)]
pub struct Vault {
    services: Vec<Service>,
    secrets: RwLock<Arc<Secrets>>,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vault")
            .field(
                "services",
                &self
                    .services
                    .iter()
                    .map(|s| &s.config.service)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Reads every secret now; a missing one is an error naming the variable or file.
fn read_all(configs: &[CredentialConfig]) -> Result<(Vec<Values>, Vec<Forms>), CredentialError> {
    let mut values = Vec::new();
    let mut raw = Vec::new();
    for c in configs {
        let secret = read_secret(c)?;
        let text = c.format.replace("{token}", &secret);
        let mut value = HeaderValue::from_str(&text).map_err(|_| CredentialError::Unusable {
            service: c.service.clone(),
        })?;
        value.set_sensitive(true);
        use base64::Engine as _;
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("{GIT_TOKEN_USER}:{secret}"));
        let mut git_value = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
            CredentialError::Unusable {
                service: c.service.clone(),
            }
        })?;
        git_value.set_sensitive(true);
        raw.push(vec![secret.into_bytes(), basic.into_bytes()]);
        values.push(Values { value, git_value });
    }
    Ok((values, raw))
}

impl Vault {
    /// Reads every credential now; a missing one is an error naming the variable or file.
    pub fn load(configs: &[CredentialConfig]) -> Result<Arc<Vault>, CredentialError> {
        let (values, raw) = read_all(configs)?;
        Ok(Arc::new(Vault {
            services: configs
                .iter()
                .map(|c| Service { config: c.clone() })
                .collect(),
            secrets: RwLock::new(Arc::new(Secrets::new(values, raw, Vec::new()))),
        }))
    }

    pub fn empty() -> Arc<Vault> {
        Arc::new(Vault::default())
    }

    fn secrets(&self) -> Arc<Secrets> {
        // A swap is one assignment: a poisoned lock still holds whole secrets.
        match self.secrets.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads every secret again and swaps them in when any changed: `Ok` names the services
    /// whose secret changed (none: nothing was swapped). A secret that cannot be read (a file
    /// half-written, gone, or one other users may read) keeps all of them in force. The
    /// scrubber then masks the new secrets and every one they replaced in this process's life
    /// (the last [`RETIRED_KEPT`] per service).
    pub fn reload(&self) -> Result<Vec<String>, CredentialError> {
        let configs: Vec<CredentialConfig> =
            self.services.iter().map(|s| s.config.clone()).collect();
        let (values, raw) = read_all(&configs)?;
        let old = self.secrets();
        let changed: Vec<String> = configs
            .iter()
            .zip(&raw)
            .enumerate()
            .filter(|(i, (_, now))| old.raw.get(*i) != Some(*now))
            .map(|(_, (c, _))| c.service.clone())
            .collect();
        if changed.is_empty() {
            return Ok(changed);
        }
        let retired = raw
            .iter()
            .enumerate()
            .map(|(i, now)| {
                let mut kept: Forms = old.raw.get(i).cloned().unwrap_or_default();
                kept.extend(old.retired.get(i).into_iter().flatten().cloned());
                kept.retain(|f| !now.contains(f));
                kept.truncate(RETIRED_KEPT * now.len());
                kept
            })
            .collect();
        let fresh = Arc::new(Secrets::new(values, raw, retired));
        match self.secrets.write() {
            Ok(mut s) => *s = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(changed)
    }

    /// The configured services, in order.
    pub fn services(&self) -> Vec<String> {
        self.services
            .iter()
            .map(|s| s.config.service.clone())
            .collect()
    }

    /// The files secrets are read from (watched for changes by `server.rs`).
    pub fn files(&self) -> Vec<std::path::PathBuf> {
        self.services
            .iter()
            .filter_map(|s| match &s.config.source {
                SecretSource::File(p) => Some(p.clone()),
                SecretSource::Env(_) => None,
            })
            .collect()
    }

    /// Every host some credential applies to.
    pub fn hosts(&self) -> Vec<String> {
        self.services
            .iter()
            .flat_map(|s| s.config.hosts.iter().chain(&s.config.git_hosts).cloned())
            .collect()
    }

    /// The service whose credential applies to `host`.
    pub fn service_for_host(&self, host: &str) -> Option<&str> {
        self.find(host).map(|(_, s)| s.config.service.as_str())
    }

    fn find(&self, host: &str) -> Option<(usize, &Service)> {
        self.services.iter().enumerate().find(|(_, s)| {
            s.config
                .hosts
                .iter()
                .chain(&s.config.git_hosts)
                .any(|h| h == host)
        })
    }

    /// For a credentialed host: removes the agent's credential headers and sets the real one
    /// (HTTP Basic `x-access-token:TOKEN` on git hosts). Also asks for an uncompressed answer so
    /// the response scrubber can see it. Returns the service name when it injected.
    pub fn inject(&self, host: &str, headers: &mut HeaderMap) -> Option<&str> {
        let (i, svc) = self.find(host)?;
        let secrets = self.secrets();
        let values = secrets.values.get(i)?;
        for h in AGENT_CREDENTIAL_HEADERS {
            headers.remove(*h);
        }
        for h in &svc.config.strip {
            headers.remove(h);
        }
        if svc.config.git_hosts.iter().any(|h| h == host) {
            headers.insert(http::header::AUTHORIZATION, values.git_value.clone());
        } else {
            headers.insert(svc.config.header.clone(), values.value.clone());
        }
        headers.insert(
            http::header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
        Some(&svc.config.service)
    }

    /// The response scrubber, when any secret is configured.
    pub fn scrubber(&self) -> Option<Scrubber> {
        self.secrets().scrubber.clone()
    }

    /// The configured `strip` lists.
    fn strip_lists(&self) -> impl Iterator<Item = &HeaderName> {
        self.services.iter().flat_map(|s| &s.config.strip)
    }
}

fn read_secret(c: &CredentialConfig) -> Result<String, CredentialError> {
    let raw = match &c.source {
        SecretSource::Env(var) => std::env::var(var).map_err(|_| CredentialError::MissingEnv {
            service: c.service.clone(),
            var: var.clone(),
        })?,
        SecretSource::File(path) => {
            crate::secret_file::read_private(path).map_err(|message| CredentialError::File {
                service: c.service.clone(),
                file: path.display().to_string(),
                message,
            })?
        }
    };
    let secret = raw.trim().to_string();
    if secret.is_empty() {
        return Err(match &c.source {
            SecretSource::Env(var) => CredentialError::MissingEnv {
                service: c.service.clone(),
                var: var.clone(),
            },
            SecretSource::File(_) => CredentialError::Unusable {
                service: c.service.clone(),
            },
        });
    }
    Ok(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `secret` to a new file `path` with `mode` (replacing `path` as a secret manager
    /// does: written beside it, renamed over it).
    fn replace(path: &std::path::Path, secret: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt as _;
        let next = path.with_extension("new");
        std::fs::write(&next, secret).expect("write");
        std::fs::set_permissions(&next, std::fs::Permissions::from_mode(mode)).expect("chmod");
        std::fs::rename(&next, path).expect("rename");
    }

    /// A vault whose github credential is the file `gh` (holding `secret`) in a temp dir.
    fn vault_with(secret: &str) -> (tempfile::TempDir, std::path::PathBuf, Arc<Vault>) {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("gh");
        replace(&file, secret, 0o600);
        let c = crate::config::Config::from_toml(
            "t.toml",
            &format!(
                "[credentials.github]\nfile = {:?}\n",
                file.display().to_string()
            ),
        )
        .expect("config");
        let v = Vault::load(&c.credentials).expect("load");
        (dir, file, v)
    }

    fn vault() -> Arc<Vault> {
        vault_with("ghp_realtoken123\n").2
    }

    #[test]
    fn strips_agent_credentials_and_injects() {
        let v = vault();
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            HeaderValue::from_static("token agent-bogus"),
        );
        h.insert("cookie", HeaderValue::from_static("s=1"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        assert_eq!(v.inject("api.github.com", &mut h), Some("github"));
        assert_eq!(h["authorization"], "Bearer ghp_realtoken123");
        assert!(h.get("cookie").is_none());
        assert_eq!(h["accept"], "*/*");
        let mut other = HeaderMap::new();
        other.insert("authorization", HeaderValue::from_static("x"));
        assert_eq!(v.inject("example.com", &mut other), None);
        assert_eq!(other["authorization"], "x");
        assert!(!format!("{v:?}").contains("ghp_"));
        // git over HTTPS: HTTP Basic with the token as password.
        let mut git = HeaderMap::new();
        git.insert(
            "authorization",
            HeaderValue::from_static("Basic YWdlbnQ6eA=="),
        );
        assert_eq!(v.inject("github.com", &mut git), Some("github"));
        use base64::Engine as _;
        let want =
            base64::engine::general_purpose::STANDARD.encode("x-access-token:ghp_realtoken123");
        assert_eq!(git["authorization"], format!("Basic {want}").as_str());
        assert!(v.hosts().contains(&"github.com".to_string()));
        let mut echoed = format!("echo {want} echo").into_bytes();
        assert_eq!(v.scrubber().expect("scrubber").scrub_bytes(&mut echoed), 1);
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_secret() {
        let (_dir, file, v) = vault_with("ghp_first\n");
        assert_eq!(v.files(), vec![file.clone()]);
        assert!(v.reload().expect("same").is_empty(), "nothing changed");
        std::fs::write(&file, "ghp_second\n").expect("write");
        assert_eq!(v.reload().expect("reload"), ["github"]);
        let mut h = HeaderMap::new();
        v.inject("api.github.com", &mut h);
        assert_eq!(h["authorization"], "Bearer ghp_second");
        // Both the new secret and the one it replaced are masked.
        let mut echoed = b"ghp_first ghp_second".to_vec();
        assert_eq!(v.scrubber().expect("scrubber").scrub_bytes(&mut echoed), 2);
        std::fs::write(&file, "  \n").expect("write");
        assert!(v.reload().is_err(), "an empty file is refused");
        std::fs::remove_file(&file).expect("rm");
        assert!(v.reload().is_err(), "a missing file is refused");
        let mut h = HeaderMap::new();
        v.inject("api.github.com", &mut h);
        assert_eq!(h["authorization"], "Bearer ghp_second", "kept in force");
    }

    fn injected(v: &Vault) -> String {
        let mut h = HeaderMap::new();
        v.inject("api.github.com", &mut h);
        h["authorization"].to_str().expect("ascii").to_string()
    }

    /// A credential file other users could read, or someone else's, or not a file at all, is
    /// refused at load (naming the file and the fix) and at reload (the secret in force stays).
    #[test]
    fn a_credential_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().expect("dir");
        let file = dir.path().join("gh");
        let config = |path: &std::path::Path| {
            crate::config::Config::from_toml(
                "t.toml",
                &format!(
                    "[credentials.github]\nfile = {:?}\n",
                    path.display().to_string()
                ),
            )
            .expect("config")
            .credentials
        };
        for mode in [0o644, 0o640, 0o604, 0o660] {
            replace(&file, "ghp_loose\n", mode);
            let e = Vault::load(&config(&file)).expect_err("loose mode");
            let text = e.to_string();
            assert!(
                text.contains(&format!("mode {mode:o}"))
                    && text.contains(&format!("chmod 600 {}", file.display())),
                "{text}"
            );
            assert!(!text.contains("ghp_loose"), "{text}");
        }
        let fifo = dir.path().join("fifo");
        let c_path =
            std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(fifo.as_os_str()))
                .expect("path");
        // SAFETY: a NUL-terminated path that outlives the call.
        assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
        for odd in [dir.path(), fifo.as_path()] {
            let e = Vault::load(&config(odd)).expect_err("not a regular file");
            assert!(e.to_string().contains("not a regular file"), "{e}");
        }
        // A link is followed; the file it names is what is checked.
        replace(&file, "ghp_linked\n", 0o600);
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let v = Vault::load(&config(&link)).expect("0600 through a link");
        assert_eq!(injected(&v), "Bearer ghp_linked");
        replace(&file, "ghp_rotated\n", 0o644);
        let e = v.reload().expect_err("loose mode on reload");
        assert!(e.to_string().contains("chmod 600"), "{e}");
        assert_eq!(
            injected(&v),
            "Bearer ghp_linked",
            "the secret in force stays"
        );
        // SAFETY: plain syscall.
        if unsafe { libc::geteuid() } == 0 {
            replace(&file, "ghp_theirs\n", 0o600);
            std::os::unix::fs::chown(&file, Some(65534), None).expect("chown");
            let e = v.reload().expect_err("another user's file");
            assert!(e.to_string().contains("owned by uid 65534"), "{e}");
            assert_eq!(injected(&v), "Bearer ghp_linked");
        }
    }

    /// Every secret a credential had in this process's life stays masked, however many
    /// rotations ago it was replaced (up to the last few).
    #[test]
    fn rotated_out_secrets_stay_masked() {
        let (_dir, file, v) = vault_with("ghp_rotation0\n");
        for i in 1..=3 {
            replace(&file, &format!("ghp_rotation{i}\n"), 0o600);
            assert!(!v.reload().expect("reload").is_empty());
        }
        let mut echoed = b"ghp_rotation0 ghp_rotation1 ghp_rotation2 ghp_rotation3".to_vec();
        assert_eq!(v.scrubber().expect("scrubber").scrub_bytes(&mut echoed), 4);
        assert!(!echoed.windows(4).any(|w| w == b"ghp_"), "{echoed:?}");
        // Bounded: the current secret and the last RETIRED_KEPT it replaced.
        for i in 4..=12 {
            replace(&file, &format!("ghp_rotation{i:02}\n"), 0o600);
            assert!(!v.reload().expect("reload").is_empty());
        }
        let s = v.scrubber().expect("scrubber");
        let mut current = b"ghp_rotation12 ghp_rotation04".to_vec();
        assert_eq!(s.scrub_bytes(&mut current), 2);
        let mut oldest = b"ghp_rotation0 ".to_vec();
        assert_eq!(s.scrub_bytes(&mut oldest), 0, "forgotten after the bound");
    }

    #[test]
    fn missing_env_is_a_clear_error() {
        let c = crate::config::Config::from_toml(
            "t.toml",
            "[credentials.stripe]\nenv = \"AIRLOCK_TEST_SURELY_UNSET_VAR\"\n",
        )
        .expect("config");
        let e = Vault::load(&c.credentials).expect_err("missing");
        assert!(
            e.to_string().contains("AIRLOCK_TEST_SURELY_UNSET_VAR"),
            "{e}"
        );
    }
}
