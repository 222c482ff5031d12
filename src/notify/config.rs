//! Notification settings: `[notify]` and `[[notify.channels]]`, parsed raw then checked.
//! With no channels (the default) nothing is sent.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::signing::WebhookSecret;
use crate::secret_file::SecretSource;

/// Why a `[notify]` section was refused: the field (e.g. `notify.channels[0].url`) and the reason.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct NotifyConfigError {
    pub field: String,
    pub message: String,
}

/// `[notify]` as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNotify {
    /// Public base URL of the admin listener, e.g. `https://airlock.example.com`; links are
    /// `{base_url}/ui/link/{token}`. Without it, notifications carry no links.
    pub base_url: Option<String>,
    /// Escalations queued per channel before new ones are dropped (with a warning).
    pub queue_size: usize,
    pub channels: Vec<RawChannel>,
    /// Lets one-click links travel in clear text (an `http://` base_url or webhook, an email
    /// channel without STARTTLS, to a host other than this one); refused otherwise.
    pub allow_plaintext_links: bool,
}

impl Default for RawNotify {
    fn default() -> Self {
        Self {
            base_url: None,
            queue_size: 1024,
            channels: Vec::new(),
            allow_plaintext_links: false,
        }
    }
}

/// One `[[notify.channels]]` entry as written. `Debug` shows its name and kind only: its URL
/// may be a secret (Slack's is).
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    pub name: Option<String>,
    pub kind: String,
    pub mode: Option<String>,
    pub digest_interval: Option<String>,
    pub max_per_minute: Option<u32>,
    /// Reviewer whose one-click links this channel carries.
    pub reviewer: Option<String>,
    /// Retries after the first failed attempt.
    pub retries: Option<u32>,
    /// First retry delay; doubled on each further retry.
    pub retry_backoff: Option<String>,
    pub timeout: Option<String>,
    // webhook: exactly one of `url` (inline), `url_file`, `url_env`
    pub url: Option<String>,
    /// The URL in a file only Airlock's user may read (a Slack webhook URL is itself a secret).
    pub url_file: Option<PathBuf>,
    /// The URL in this environment variable.
    pub url_env: Option<String>,
    pub format: Option<String>,
    /// A `whsec_...` secret in a file only Airlock's user may read; or:
    pub signing_secret_file: Option<PathBuf>,
    /// ... in this environment variable. Never inline.
    pub signing_secret_env: Option<String>,
    // email
    pub smtp_host: Option<String>,
    pub smtp_port: Option<u16>,
    pub from: Option<String>,
    pub to: Option<Vec<String>>,
    pub starttls: Option<bool>,
}

impl std::fmt::Debug for RawChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawChannel")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

/// Checked `[notify]`.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// Without trailing slash.
    pub base_url: Option<String>,
    pub queue_size: usize,
    pub channels: Vec<ChannelConfig>,
    /// `notify.allow_plaintext_links`: checked again once the URLs kept outside the config file
    /// are read ([`NotifyConfig::read_secrets`]).
    pub allow_plaintext_links: bool,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            base_url: None,
            queue_size: 1024,
            channels: Vec::new(),
            allow_plaintext_links: false,
        }
    }
}

/// When a channel sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One message per escalation.
    PerEvent,
    /// One message per interval with every escalation of the window.
    Digest(Duration),
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookFormat {
    Json,
    /// `{"text": ...}` for Slack incoming webhooks (and compatible: Mattermost, Rocket.Chat).
    Slack,
}

/// `Debug` never shows a webhook's URL (it may be a secret) nor an email channel's addresses.
#[derive(Clone)]
pub enum ChannelKind {
    Webhook {
        /// May itself be a secret (Slack webhook URLs are): never logged.
        url: WebhookUrl,
        format: WebhookFormat,
        /// Standard Webhooks signing, when a signing secret is configured.
        signing: Option<WebhookSigning>,
    },
    Email {
        smtp_host: String,
        smtp_port: u16,
        from: String,
        to: Vec<String>,
        starttls: bool,
    },
}

impl std::fmt::Debug for ChannelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelKind::Webhook {
                url,
                format,
                signing,
            } => f
                .debug_struct("Webhook")
                .field("url", url)
                .field("format", format)
                .field("signed", &signing.is_some())
                .finish(),
            ChannelKind::Email {
                smtp_host,
                smtp_port,
                starttls,
                ..
            } => f
                .debug_struct("Email")
                .field("smtp_host", smtp_host)
                .field("smtp_port", smtp_port)
                .field("starttls", starttls)
                .finish_non_exhaustive(),
        }
    }
}

/// A webhook channel's URL: where it is written and, once known, the URL. Inline (`url`) it is
/// known at once; from `url_file` or `url_env` once [`NotifyConfig::read_secrets`] ran (only
/// `serve` and `config check` read it). `Debug` shows where it is, never the URL.
#[derive(Clone)]
pub struct WebhookUrl {
    /// `None`: inline in the config file.
    pub source: Option<SecretSource>,
    pub uri: Option<http::Uri>,
}

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = if self.uri.is_some() {
            "[redacted]"
        } else {
            "[not read]"
        };
        match &self.source {
            None => f.write_str(state),
            Some(source) => write!(f, "{state} from {source:?}"),
        }
    }
}

/// Parses a webhook URL; the error never quotes it (it may be a secret).
fn webhook_uri(text: &str) -> Result<http::Uri, String> {
    let url: http::Uri = text
        .trim()
        .parse()
        .map_err(|_| "is not a URL".to_string())?;
    if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
        return Err("must be an absolute http:// or https:// URL".into());
    }
    Ok(url)
}

/// A webhook channel's signing secret: where it is, and (once [`NotifyConfig::read_secrets`]
/// ran, which only `serve` and `config check` do) the secret. Other commands never need it.
#[derive(Debug, Clone)]
pub struct WebhookSigning {
    pub source: SecretSource,
    pub secret: Option<WebhookSecret>,
}

/// Retries after a failed delivery: `retries` more attempts, waiting `backoff`, then twice that...
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub retries: u32,
    pub backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

/// A checked channel. Fields are public so tests can shorten timings.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    /// For logs: `name`, else `<kind>#<index>`. Never the URL.
    pub name: String,
    pub kind: ChannelKind,
    pub mode: Mode,
    /// Messages (a digest counts as one) per `rate_window`.
    pub max_per_minute: u32,
    /// The rate-limit window: one minute (only tests change it).
    pub rate_window: Duration,
    pub reviewer: Option<String>,
    pub retry: RetryPolicy,
    /// Per attempt.
    pub timeout: Duration,
}

impl NotifyConfig {
    /// Parses a TOML document holding only a `[notify]` table (handy for tests and tools).
    pub fn from_toml(text: &str) -> Result<NotifyConfig, NotifyConfigError> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Doc {
            #[serde(default)]
            notify: RawNotify,
        }
        let doc: Doc = toml::from_str(text).map_err(|e| NotifyConfigError {
            field: "notify".into(),
            message: e.message().to_string(),
        })?;
        check(doc.notify)
    }
}

/// Checks a raw `[notify]` table.
pub fn check(raw: RawNotify) -> Result<NotifyConfig, NotifyConfigError> {
    let base_url = match raw.base_url {
        None => None,
        Some(u) => {
            let uri: http::Uri = u.parse().map_err(|_| NotifyConfigError {
                field: "notify.base_url".into(),
                message: format!("{u:?} is not a URL"),
            })?;
            if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
                return Err(NotifyConfigError {
                    field: "notify.base_url".into(),
                    message: "must be an absolute http:// or https:// URL".into(),
                });
            }
            if uri.query().is_some() {
                return Err(NotifyConfigError {
                    field: "notify.base_url".into(),
                    message: "must not have a query string".into(),
                });
            }
            Some(u.trim_end_matches('/').to_string())
        }
    };
    if raw.queue_size == 0 {
        return Err(NotifyConfigError {
            field: "notify.queue_size".into(),
            message: "must be at least 1".into(),
        });
    }
    let channels = parse_channels(raw.channels)?;
    if !raw.allow_plaintext_links {
        super::plaintext::refuse_plaintext_links(base_url.as_deref(), &channels)?;
    }
    Ok(NotifyConfig {
        base_url,
        queue_size: raw.queue_size,
        channels,
        allow_plaintext_links: raw.allow_plaintext_links,
    })
}

/// Checks `[[notify.channels]]` entries.
pub fn parse_channels(raw: Vec<RawChannel>) -> Result<Vec<ChannelConfig>, NotifyConfigError> {
    raw.into_iter()
        .enumerate()
        .map(|(i, c)| check_channel(i, c))
        .collect()
}

fn check_channel(i: usize, c: RawChannel) -> Result<ChannelConfig, NotifyConfigError> {
    let bad = |field: &str, message: String| NotifyConfigError {
        field: format!("notify.channels[{i}].{field}"),
        message,
    };
    let dur = |field: &str, v: &str| {
        humantime::parse_duration(v)
            .map_err(|e| bad(field, format!("{v:?} is not a duration like \"5m\": {e}")))
    };
    let mode = match c.mode.as_deref().unwrap_or("per_event") {
        "per_event" => {
            if c.digest_interval.is_some() {
                return Err(bad(
                    "digest_interval",
                    "only applies with mode = \"digest\"".into(),
                ));
            }
            Mode::PerEvent
        }
        "digest" => {
            let d = dur(
                "digest_interval",
                c.digest_interval.as_deref().unwrap_or("5m"),
            )?;
            if d.is_zero() {
                return Err(bad("digest_interval", "must be more than zero".into()));
            }
            Mode::Digest(d)
        }
        "off" => Mode::Off,
        other => {
            return Err(bad(
                "mode",
                format!("expected \"per_event\", \"digest\" or \"off\", got {other:?}"),
            ))
        }
    };
    let max_per_minute = c.max_per_minute.unwrap_or(30);
    if max_per_minute == 0 {
        return Err(bad("max_per_minute", "must be at least 1".into()));
    }
    let retry = RetryPolicy {
        retries: c.retries.unwrap_or(3),
        backoff: dur(
            "retry_backoff",
            c.retry_backoff.as_deref().unwrap_or("200ms"),
        )?,
    };
    if retry.retries > 10 {
        return Err(bad("retries", "at most 10".into()));
    }
    let timeout = dur("timeout", c.timeout.as_deref().unwrap_or("10s"))?;
    if timeout.is_zero() {
        return Err(bad("timeout", "must be more than zero".into()));
    }
    if let Some(r) = &c.reviewer {
        if r.trim().is_empty() {
            return Err(bad("reviewer", "must not be empty".into()));
        }
    }
    let unexpected = |fields: &[(&str, bool)]| -> Result<(), NotifyConfigError> {
        match fields.iter().find(|(_, set)| *set) {
            Some((f, _)) => Err(bad(f, format!("does not apply to kind = {:?}", c.kind))),
            None => Ok(()),
        }
    };
    let kind = match c.kind.as_str() {
        "webhook" => {
            unexpected(&[
                ("smtp_host", c.smtp_host.is_some()),
                ("smtp_port", c.smtp_port.is_some()),
                ("from", c.from.is_some()),
                ("to", c.to.is_some()),
                ("starttls", c.starttls.is_some()),
            ])?;
            let url = webhook_url(&c).map_err(|(field, message)| bad(field, message))?;
            let format = match c.format.as_deref().unwrap_or("json") {
                "json" => WebhookFormat::Json,
                "slack" => WebhookFormat::Slack,
                other => {
                    return Err(bad(
                        "format",
                        format!("expected \"json\" or \"slack\", got {other:?}"),
                    ))
                }
            };
            let signing = signing(&c).map_err(|(field, message)| bad(field, message))?;
            ChannelKind::Webhook {
                url,
                format,
                signing,
            }
        }
        "email" => {
            unexpected(&[
                ("url", c.url.is_some()),
                ("url_file", c.url_file.is_some()),
                ("url_env", c.url_env.is_some()),
                ("format", c.format.is_some()),
                ("signing_secret_file", c.signing_secret_file.is_some()),
                ("signing_secret_env", c.signing_secret_env.is_some()),
            ])?;
            let smtp_host = c
                .smtp_host
                .clone()
                .filter(|h| !h.trim().is_empty())
                .ok_or_else(|| bad("smtp_host", "required".into()))?;
            let from = c
                .from
                .clone()
                .ok_or_else(|| bad("from", "required".into()))?;
            from.parse::<lettre::message::Mailbox>()
                .map_err(|e| bad("from", format!("{from:?} is not an address: {e}")))?;
            let to = c.to.clone().unwrap_or_default();
            if to.is_empty() {
                return Err(bad("to", "needs at least one address".into()));
            }
            for t in &to {
                t.parse::<lettre::message::Mailbox>()
                    .map_err(|e| bad("to", format!("{t:?} is not an address: {e}")))?;
            }
            let starttls = c.starttls.unwrap_or(true);
            ChannelKind::Email {
                smtp_host,
                smtp_port: c.smtp_port.unwrap_or(if starttls { 587 } else { 25 }),
                from,
                to,
                starttls,
            }
        }
        other => {
            return Err(bad(
                "kind",
                format!("expected \"webhook\" or \"email\", got {other:?}"),
            ))
        }
    };
    let name = c.name.clone().unwrap_or_else(|| format!("{}#{i}", c.kind));
    Ok(ChannelConfig {
        name,
        kind,
        mode,
        max_per_minute,
        rate_window: Duration::from_secs(60),
        reviewer: c.reviewer,
        retry,
        timeout,
    })
}

/// A webhook channel's URL: inline (checked now), or where it is (read by
/// [`NotifyConfig::read_secrets`]); on error, the field and why.
fn webhook_url(c: &RawChannel) -> Result<WebhookUrl, (&'static str, String)> {
    match (&c.url, &c.url_file, &c.url_env) {
        (None, None, None) => Err((
            "url",
            "required: set one of url, url_file (a file only Airlock's user may read) and \
             url_env"
                .into(),
        )),
        (Some(u), None, None) => Ok(WebhookUrl {
            source: None,
            uri: Some(webhook_uri(u).map_err(|m| ("url", m))?),
        }),
        (None, Some(path), None) => Ok(WebhookUrl {
            source: Some(SecretSource::File(path.clone())),
            uri: None,
        }),
        (None, None, Some(var)) if var.is_empty() => Err(("url_env", "must not be empty".into())),
        (None, None, Some(var)) => Ok(WebhookUrl {
            source: Some(SecretSource::Env(var.clone())),
            uri: None,
        }),
        (_, file, _) => Err((
            if file.is_some() {
                "url_file"
            } else {
                "url_env"
            },
            "set one of url, url_file and url_env, not more".into(),
        )),
    }
}

/// Where a webhook channel's signing secret is, if it names one; on error, the field and why.
fn signing(c: &RawChannel) -> Result<Option<WebhookSigning>, (&'static str, String)> {
    let source = match (&c.signing_secret_file, &c.signing_secret_env) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err((
                "signing_secret_env",
                "set one of signing_secret_file and signing_secret_env, not both".into(),
            ))
        }
        (Some(path), None) => SecretSource::File(path.clone()),
        (None, Some(var)) if var.is_empty() => {
            return Err(("signing_secret_env", "must not be empty".into()))
        }
        (None, Some(var)) => SecretSource::Env(var.clone()),
    };
    Ok(Some(WebhookSigning {
        source,
        secret: None,
    }))
}

/// Reads a secret kept outside the config file; the error names the field, never the secret.
fn read_source(i: usize, field: &str, source: &SecretSource) -> Result<String, NotifyConfigError> {
    let err = |message: String| NotifyConfigError {
        field: format!("notify.channels[{i}].{field}"),
        message,
    };
    let text = match source {
        SecretSource::File(path) => crate::secret_file::read_private(path)
            .map_err(|e| err(format!("{}: {e}", path.display())))?,
        SecretSource::Env(var) => std::env::var(var).map_err(|_| {
            err(format!(
                "environment variable {var} is not set (or not UTF-8)"
            ))
        })?,
    };
    if text.trim().is_empty() {
        return Err(err(match source {
            SecretSource::File(path) => format!("{} is empty", path.display()),
            SecretSource::Env(var) => format!("environment variable {var} is empty"),
        }));
    }
    Ok(text)
}

fn source_field(source: &SecretSource, file: &'static str, env: &'static str) -> &'static str {
    match source {
        SecretSource::File(_) => file,
        SecretSource::Env(_) => env,
    }
}

impl NotifyConfig {
    /// Reads and checks every webhook URL kept outside the config file (`url_file`,
    /// `url_env`) and every signing secret (`serve` and `config check` at start; a reload
    /// checks them too), then refuses clear-text links again with the URLs known. The error
    /// names the field, never the secret.
    pub fn read_secrets(&mut self) -> Result<(), NotifyConfigError> {
        for (i, ch) in self.channels.iter_mut().enumerate() {
            let ChannelKind::Webhook { url, signing, .. } = &mut ch.kind else {
                continue;
            };
            if let Some(source) = &url.source {
                let field = source_field(source, "url_file", "url_env");
                let text = read_source(i, field, source)?;
                let uri = webhook_uri(&text).map_err(|message| NotifyConfigError {
                    field: format!("notify.channels[{i}].{field}"),
                    message: format!("what it holds {message}"),
                })?;
                url.uri = Some(uri);
            }
            let Some(signing) = signing else {
                continue;
            };
            let field = source_field(&signing.source, "signing_secret_file", "signing_secret_env");
            let text = read_source(i, field, &signing.source)?;
            let secret = WebhookSecret::parse(&text).map_err(|e| NotifyConfigError {
                field: format!("notify.channels[{i}].{field}"),
                message: e.to_string(),
            })?;
            signing.secret = Some(secret);
        }
        if !self.allow_plaintext_links {
            super::plaintext::refuse_plaintext_links(self.base_url.as_deref(), &self.channels)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// Review of session 23: a channel's Debug (one `?config` in a log line) printed its URL,
    /// which for Slack is the secret that lets anyone post.
    #[test]
    fn debug_never_shows_a_webhook_url() {
        const URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX";
        let text = format!(
            "[[notify.channels]]\nkind = \"webhook\"\nformat = \"slack\"\nurl = \"{URL}\"\n"
        );
        let raw: toml::Value = toml::from_str(&text).expect("toml");
        let channel: super::RawChannel = raw["notify"]["channels"][0]
            .clone()
            .try_into()
            .expect("channel");
        assert!(!format!("{channel:?}").contains("SECRET"));
        let checked = super::NotifyConfig::from_toml(&text).expect("config");
        let shown = format!("{checked:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
    }
}
