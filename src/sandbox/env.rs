//! COMMAND's environment: an allowlist, never the caller's whole environment. Passed through:
//! PATH, LANG, LC_*, TERM, TZ and the names given with `--env NAME`; Airlock adds HOME (and
//! USER/LOGNAME when the user has a passwd entry), the proxy variables and the CA variables.
//! `--env` refuses, naming the variable, anything that would hand COMMAND a secret Airlock is
//! there to keep from it: a configured credential's `env`, any `AIRLOCK_*` variable, and the
//! well-known provider secrets; and `airlock run` refuses to start if a configured credential's
//! variable is one the allowlist itself would pass (`LC_*`, `TZ` …) and is set.

use std::ffi::{OsStr, OsString};

use super::SandboxError;

/// Passed through from the caller when set.
const ALLOWED: &[&str] = &["PATH", "LANG", "TERM", "TZ"];

/// Used when the caller has no PATH.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Proxy variables Airlock sets (the last two it removes).
pub const PROXY_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// CA variables Airlock sets.
pub const CA_VARS: &[&str] = &[
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "NODE_EXTRA_CA_CERTS",
    "AIRLOCK_CA_FILE",
];

/// Provider secrets `--env` never passes (Airlock injects provider credentials itself).
const PROVIDER_SECRETS: &[&str] = &[
    "GITHUB_TOKEN",
    "GH_TOKEN",
    "GITHUB_PAT",
    "GH_ENTERPRISE_TOKEN",
    "GITHUB_ENTERPRISE_TOKEN",
    "GITLAB_TOKEN",
    "GITLAB_PRIVATE_TOKEN",
    "CI_JOB_TOKEN",
    "BITBUCKET_TOKEN",
    "STRIPE_SECRET_KEY",
    "STRIPE_API_KEY",
    "STRIPE_RESTRICTED_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
    "AZURE_CLIENT_SECRET",
    "SLACK_TOKEN",
    "SLACK_BOT_TOKEN",
    "SLACK_USER_TOKEN",
    "TWILIO_AUTH_TOKEN",
    "SENDGRID_API_KEY",
    "DIGITALOCEAN_TOKEN",
    "DIGITALOCEAN_ACCESS_TOKEN",
    "CLOUDFLARE_API_TOKEN",
    "CLOUDFLARE_API_KEY",
    "CF_API_TOKEN",
    "HEROKU_API_KEY",
    "VERCEL_TOKEN",
    "NPM_TOKEN",
    "NODE_AUTH_TOKEN",
    "PYPI_TOKEN",
    "TWINE_PASSWORD",
    "CARGO_REGISTRY_TOKEN",
    "DOCKER_PASSWORD",
    "SSH_AUTH_SOCK",
];

/// Name prefixes of providers whose tokens, keys and secrets are never passed.
const PROVIDER_PREFIXES: &[&str] = &["GITHUB_", "GH_", "GITLAB_", "STRIPE_", "AWS_"];
const SECRET_WORDS: &[&str] = &["TOKEN", "SECRET", "KEY", "PASSWORD", "CREDENTIAL"];

/// Checks the `--env` names; `secret_env` are the configured credentials' `env` variables.
/// Also refuses to start when a configured credential's variable is one the allowlist would pass
/// (say `LC_TOKEN` or `TZ`) and it is set.
pub fn check_pass(names: &[String], secret_env: &[String]) -> Result<(), SandboxError> {
    for name in names {
        if let Some(why) = refused(name, secret_env) {
            return Err(SandboxError::Invalid(format!(
                "refusing --env {name}: {why}; COMMAND must not see it"
            )));
        }
    }
    check_allowlisted(secret_env, |n| std::env::var_os(n).is_some())
}

/// Refuses a configured credential's variable that is set (`is_set`) and that the allowlist
/// would pass through.
fn check_allowlisted(
    secret_env: &[String],
    is_set: impl Fn(&str) -> bool,
) -> Result<(), SandboxError> {
    match secret_env
        .iter()
        .find(|n| allowed(OsStr::new(n.as_str())) && is_set(n))
    {
        Some(n) => Err(SandboxError::Invalid(format!(
            "refusing to start: {n} holds a credential configured in [credentials.*] env, and \
             COMMAND's environment passes {n} through; unset it or rename the variable"
        ))),
        None => Ok(()),
    }
}

fn refused(name: &str, secret_env: &[String]) -> Option<&'static str> {
    if name.is_empty() || name.contains('=') || name.contains('\0') {
        return Some("not a variable name");
    }
    if secret_env.iter().any(|s| s == name) {
        return Some("it holds a credential configured in [credentials.*] env");
    }
    let upper = name.to_ascii_uppercase();
    if upper.starts_with("AIRLOCK_") {
        return Some("AIRLOCK_* variables are Airlock's (tokens, keys, its own settings)");
    }
    if PROXY_VARS.contains(&name) || CA_VARS.contains(&name) {
        return Some("airlock run sets it");
    }
    if PROVIDER_SECRETS.contains(&upper.as_str())
        || (PROVIDER_PREFIXES.iter().any(|p| upper.starts_with(p))
            && SECRET_WORDS.iter().any(|w| upper.contains(w)))
    {
        return Some("it is a provider secret (Airlock injects provider credentials itself)");
    }
    None
}

/// The caller's variables COMMAND gets: the allowlist plus `pass` (already checked).
pub fn passed_through(
    caller: impl IntoIterator<Item = (OsString, OsString)>,
    pass: &[String],
) -> Vec<(OsString, OsString)> {
    let mut out: Vec<(OsString, OsString)> = caller
        .into_iter()
        .filter(|(k, _)| allowed(k) || pass.iter().any(|p| OsStr::new(p) == k.as_os_str()))
        .collect();
    if !out.iter().any(|(k, _)| k == "PATH") {
        out.push(("PATH".into(), DEFAULT_PATH.into()));
    }
    out
}

fn allowed(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    ALLOWED.contains(&name) || name.starts_with("LC_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_refused_by_name() {
        let configured = vec!["MY_GH".to_string()];
        for bad in [
            "MY_GH",
            "AIRLOCK_AGENT_TOKEN",
            "AIRLOCK_ADMIN_TOKEN",
            "GITHUB_TOKEN",
            "gh_token",
            "GITHUB_APP_PRIVATE_KEY",
            "STRIPE_SECRET_KEY",
            "STRIPE_LIVE_KEY",
            "AWS_SECRET_ACCESS_KEY",
            "HTTPS_PROXY",
            "SSL_CERT_FILE",
            "A=B",
            "",
        ] {
            let err = check_pass(&[bad.to_string()], &configured);
            assert!(err.is_err(), "{bad} passed");
            if !bad.is_empty() {
                assert!(err.unwrap_err().to_string().contains(bad));
            }
        }
        for ok in [
            "EDITOR",
            "OPENAI_API_KEY",
            "GITHUB_REPOSITORY",
            "AWS_REGION",
        ] {
            assert!(check_pass(&[ok.to_string()], &configured).is_ok(), "{ok}");
        }
    }

    #[test]
    fn a_credential_variable_the_allowlist_would_pass_is_refused() {
        let configured = vec!["LC_GH_TOKEN".to_string(), "MY_GH".to_string()];
        let err = check_allowlisted(&configured, |_| true).expect_err("refused");
        assert!(err.to_string().contains("LC_GH_TOKEN"), "{err}");
        // Unset, or not one the allowlist passes: nothing to refuse.
        assert!(check_allowlisted(&configured, |n| n == "MY_GH").is_ok());
        assert!(check_allowlisted(&configured[1..], |_| true).is_ok());
    }

    #[test]
    fn only_the_allowlist_passes() {
        let caller = [
            ("PATH", "/bin"),
            ("HOME", "/root"),
            ("LANG", "C.UTF-8"),
            ("LC_ALL", "C"),
            ("TERM", "xterm"),
            ("TZ", "UTC"),
            ("EDITOR", "vi"),
            ("GITHUB_TOKEN", "ghp_x"),
            ("AIRLOCK_AGENT_TOKEN", "alk_x"),
            ("SUDO_USER", "me"),
        ]
        .map(|(k, v)| (OsString::from(k), OsString::from(v)));
        let env = passed_through(caller.clone(), &["EDITOR".to_string()]);
        let names: Vec<_> = env
            .iter()
            .map(|(k, _)| k.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["PATH", "LANG", "LC_ALL", "TERM", "TZ", "EDITOR"]);
        let env = passed_through(Vec::new(), &[]);
        assert_eq!(env, vec![("PATH".into(), DEFAULT_PATH.into())]);
    }
}
