//! Notifications for escalated reviews: webhooks (JSON or Slack) and email, per event or as a
//! digest, rate limited and retried, with optional one-click approve/reject links.
//!
//! [`Notifier::escalated`] never blocks and never fails: it puts a summary of the review on each
//! channel's bounded queue (dropping it, with a warning, when the queue is full). One background
//! task per channel renders and delivers. Summaries carry no headers, bodies, query strings or
//! parameters; webhook URLs (which can be secrets) are never logged. In text (Slack, email) the
//! agent's method, host and path are percent-encoded outside printable ASCII and clipped, so
//! they cannot forge a line such as a fake approve link (`shown`). A webhook channel with a
//! signing secret signs each delivery the Standard Webhooks way (`signing`).

pub mod config;
mod email;
mod fair;
pub mod links;
mod plaintext;
pub mod signing;
mod webhook;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;
use tokio::time::Instant;

pub use config::{
    ChannelConfig, ChannelKind, Mode, NotifyConfig, NotifyConfigError, RawChannel, RawNotify,
    RetryPolicy, WebhookFormat, WebhookSigning, WebhookUrl,
};
pub use links::{load_or_create_key, LinkAction, LinkClaims, LinkError, LinkSigner};
pub use signing::{SecretFormatError, WebhookSecret};

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("channel setup: {0}")]
    Setup(String),
    #[error("webhook: {0}")]
    Webhook(String),
    #[error("email: {0}")]
    Email(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
}

/// What a notification says about one escalated review. Deliberately small: no headers, no
/// body, no query string, no extracted parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Escalation {
    pub review_id: String,
    /// The first rule's tool; `also_tools`, those of the other rules that held it too.
    pub tool: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub also_tools: Vec<String>,
    pub service: Option<String>,
    pub agent: Option<String>,
    pub method: String,
    pub host: String,
    /// Path only: the query string and fragment are cut off.
    pub path: String,
    pub reason_codes: Vec<String>,
    /// RFC 3339.
    pub expires_at: String,
    pub expires_at_ms: u64,
    /// The agent's owner and the rule's approval policy: who may be sent links. Never sent.
    #[serde(skip)]
    pub agent_owner: Option<String>,
    #[serde(skip)]
    pub approval: crate::rules::ApprovalPolicy,
}

/// Who may be sent a one-click link: links are minted only for people who may take their
/// action on that review now (the gate's reviewers and approval rules implement it).
pub trait LinkPolicy: Send + Sync + 'static {
    /// The SHA-256 of `reviewer`'s token if she may take `action` on `e` now (her link is bound
    /// to that token: it stops working when the token changes); `None`: no link.
    fn may_link(&self, e: &Escalation, reviewer: &str, action: LinkAction) -> Option<[u8; 32]>;
}

/// One escalation as rendered for a channel: the summary plus that channel's reviewer links.
#[derive(Debug, Clone, Serialize)]
struct Item<'a> {
    #[serde(flatten)]
    escalation: &'a Escalation,
    #[serde(skip_serializing_if = "Option::is_none")]
    approve_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reject_url: Option<String>,
}

struct ChannelHandle {
    name: String,
    tx: mpsc::Sender<Arc<Escalation>>,
    /// Shared with the channel's task, which counts the notifications its fair queue gives up.
    dropped: Arc<AtomicU64>,
}

/// Fans escalations out to the configured channels. Cheap to share (`Arc`).
pub struct Notifier {
    channels: Vec<ChannelHandle>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("channels", &self.channels.len())
            .finish()
    }
}

impl Notifier {
    /// Starts one background task per channel that is not `off`. Must be called inside a Tokio
    /// runtime (outside one, it logs an error and returns a notifier that sends nothing). It
    /// sends no links: a link is bound to its reviewer's token, which only a [`LinkPolicy`]
    /// knows ([`Notifier::start_with_policy`]). A channel that cannot be set up is logged and
    /// skipped.
    pub fn start(
        cfg: NotifyConfig,
        links: Option<Arc<LinkSigner>>,
        base_url: Option<String>,
    ) -> Arc<Notifier> {
        Self::start_with_policy(cfg, links, base_url, None)
    }

    /// [`Notifier::start`] with links: they are added when `links` is set, a base URL is known
    /// (`base_url`, else `cfg.base_url`) and the channel names a `reviewer`, and minted only when
    /// `policy` says that reviewer may take that action on that review (the decision is checked
    /// again when the link is used). Without a policy, no links.
    pub fn start_with_policy(
        cfg: NotifyConfig,
        links: Option<Arc<LinkSigner>>,
        base_url: Option<String>,
        policy: Option<Arc<dyn LinkPolicy>>,
    ) -> Arc<Notifier> {
        if cfg.channels.iter().all(|c| c.mode == Mode::Off) {
            return Notifier::disabled();
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::error!("notify: not started inside a Tokio runtime; notifications are off");
            return Notifier::disabled();
        };
        let base_url = base_url
            .or(cfg.base_url.clone())
            .map(|b| b.trim_end_matches('/').to_string());
        let mut channels = Vec::new();
        for ch in cfg.channels {
            if ch.mode == Mode::Off {
                continue;
            }
            let sink = match Sink::new(&ch) {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(channel = %ch.name, error = %e, "notify: channel disabled");
                    continue;
                }
            };
            let link_ctx = match (&links, &base_url, &ch.reviewer, &policy) {
                (Some(l), Some(b), Some(r), Some(p)) => Some(LinkCtx {
                    signer: l.clone(),
                    base_url: b.clone(),
                    reviewer: r.clone(),
                    policy: p.clone(),
                }),
                _ => None,
            };
            let (tx, rx) = mpsc::channel(cfg.queue_size);
            let name = ch.name.clone();
            let dropped = Arc::new(AtomicU64::new(0));
            let worker = Worker {
                cfg: ch,
                sink,
                links: link_ctx,
                rx,
                cap: cfg.queue_size,
                given_up: dropped.clone(),
            };
            rt.spawn(worker.run());
            channels.push(ChannelHandle { name, tx, dropped });
        }
        Arc::new(Notifier { channels })
    }

    /// A notifier with no channels.
    pub fn disabled() -> Arc<Notifier> {
        Arc::new(Notifier {
            channels: Vec::new(),
        })
    }

    /// Queues a notification of `escalation` on every channel. Never blocks, never fails.
    pub fn escalated(&self, escalation: Escalation) {
        if self.channels.is_empty() {
            return;
        }
        let ev = Arc::new(escalation);
        for ch in &self.channels {
            match ch.tx.try_send(ev.clone()) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    crate::metrics::notification(&ch.name, "dropped");
                    let n = ch.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if n == 1 || n % 100 == 0 {
                        tracing::warn!(
                            channel = %ch.name,
                            review = %ev.review_id,
                            dropped_total = n,
                            "notify: queue full; escalation notification dropped"
                        );
                    }
                }
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    crate::metrics::notification(&ch.name, "dropped");
                    let n = ch.dropped.fetch_add(1, Ordering::Relaxed) + 1;
                    if n == 1 || n % 100 == 0 {
                        tracing::warn!(channel = %ch.name, dropped_total = n,
                            "notify: channel task has stopped; notification dropped");
                    }
                }
            }
        }
    }

    /// Notifications dropped so far because a channel's queue was full, over all channels.
    pub fn dropped(&self) -> u64 {
        self.channels
            .iter()
            .map(|c| c.dropped.load(Ordering::Relaxed))
            .sum()
    }
}

struct LinkCtx {
    signer: Arc<LinkSigner>,
    base_url: String,
    reviewer: String,
    policy: Arc<dyn LinkPolicy>,
}

impl LinkCtx {
    /// A link for the channel's reviewer, if that reviewer may take `action` on `e`.
    fn url(&self, e: &Escalation, action: LinkAction) -> Option<String> {
        let token_sha256 = self.policy.may_link(e, &self.reviewer, action)?;
        let token = self.signer.mint_until(
            &e.review_id,
            action,
            &self.reviewer,
            &token_sha256,
            e.expires_at_ms,
        );
        Some(format!("{}/ui/link/{token}", self.base_url))
    }
}

enum Sink {
    Webhook(webhook::WebhookSink, WebhookFormat),
    Email(email::EmailSink),
}

/// A rendered message, ready to (re)send.
enum Outgoing {
    /// `id`: the `webhook-id` of a signed channel, the same on every attempt.
    Webhook {
        body: Bytes,
        id: String,
    },
    Email {
        subject: String,
        body: String,
    },
}

impl Sink {
    fn new(ch: &ChannelConfig) -> Result<Sink, NotifyError> {
        Ok(match &ch.kind {
            ChannelKind::Webhook {
                url,
                format,
                signing,
            } => {
                // A channel that should sign but whose secret was never read must not send
                // unsigned: receivers that check would drop it, those that don't would be misled.
                let secret = match signing {
                    None => None,
                    Some(s) => Some(s.secret.clone().ok_or_else(|| {
                        NotifyError::Setup("the signing secret was not read".into())
                    })?),
                };
                // A URL kept outside the config file that was never read: nowhere to send.
                let url = url.uri.clone().ok_or_else(|| {
                    NotifyError::Setup("the webhook URL (url_file or url_env) was not read".into())
                })?;
                Sink::Webhook(webhook::WebhookSink::new(url, secret)?, *format)
            }
            ChannelKind::Email {
                smtp_host,
                smtp_port,
                from,
                to,
                starttls,
            } => Sink::Email(email::EmailSink::new(
                smtp_host, *smtp_port, from, to, *starttls, ch.timeout,
            )?),
        })
    }

    /// `links_base`: the base URL of the channel's links, when it has links.
    fn render(&self, items: &[Item<'_>], digest: bool, links_base: Option<&str>) -> Outgoing {
        match self {
            Sink::Webhook(_, WebhookFormat::Json) => {
                let v = match (digest, items) {
                    (false, [one]) => {
                        let mut v = serde_json::to_value(one).unwrap_or_default();
                        if let Some(o) = v.as_object_mut() {
                            o.insert("event".into(), "review.escalated".into());
                        }
                        v
                    }
                    _ => serde_json::json!({
                        "event": "review.digest",
                        "count": items.len(),
                        "reviews": items,
                    }),
                };
                Outgoing::Webhook {
                    body: Bytes::from(v.to_string()),
                    id: signing::new_message_id(),
                }
            }
            Sink::Webhook(_, WebhookFormat::Slack) => {
                let text = slack_escape(&text_body(items, links_base, true));
                Outgoing::Webhook {
                    body: Bytes::from(serde_json::json!({ "text": text }).to_string()),
                    id: signing::new_message_id(),
                }
            }
            Sink::Email(_) => Outgoing::Email {
                subject: subject(items),
                body: text_body(items, links_base, false),
            },
        }
    }

    async fn send(&self, msg: &Outgoing) -> Result<(), NotifyError> {
        match (self, msg) {
            (Sink::Webhook(w, _), Outgoing::Webhook { body, id }) => w.send(body.clone(), id).await,
            (Sink::Email(m), Outgoing::Email { subject, body }) => m.send(subject, body).await,
            _ => Err(NotifyError::Setup(
                "message does not fit the channel".into(),
            )),
        }
    }
}

impl Escalation {
    /// Every tool the review was held under (`a + b`), as text notifications show it.
    pub fn tools_shown(&self) -> Option<String> {
        crate::rules::tool_names(self.tool.as_deref(), &self.also_tools)
    }
}

fn subject(items: &[Item<'_>]) -> String {
    match items {
        [one] => format!(
            "Airlock: approval needed for {} ({})",
            one.escalation.tools_shown().as_deref().unwrap_or("request"),
            one.escalation.review_id
        ),
        _ => format!("Airlock: {} requests need approval", items.len()),
    }
}

/// Longest request line a text notification shows, in characters (after encoding).
const REQUEST_SHOWN: usize = 200;

/// Agent-chosen text (a method, a host and path) as a text notification shows it: every byte
/// outside printable ASCII, and the backtick, percent-encoded, so that a line or paragraph
/// separator (U+2028, U+2029, U+0085), a bidi override or a zero-width character cannot draw a
/// line of its own ("Approve: <another link>") or hide text, and the text cannot leave a Slack
/// code span; clipped to `max` characters, with `…` when cut.
fn shown(s: &str, max: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max) + 3);
    for b in s.bytes() {
        let plain = b.is_ascii_graphic() && b != b'`';
        if out.len() + if plain { 1 } else { 3 } > max {
            out.push('…');
            break;
        }
        if plain {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Plain text, one block per review (email bodies and Slack text, where the request line is a
/// code span), and which links are Airlock's when the channel sends links (`links_base`).
fn text_body(items: &[Item<'_>], links_base: Option<&str>, slack: bool) -> String {
    let mut out = String::new();
    if items.len() != 1 {
        out.push_str(&format!(
            "{} requests are waiting for approval.\n\n",
            items.len()
        ));
    }
    for it in items {
        let e = it.escalation;
        out.push_str(&format!(
            "Review {} needs approval: {}\n",
            e.review_id,
            e.tools_shown().as_deref().unwrap_or("(no tool)")
        ));
        if let Some(s) = &e.service {
            out.push_str(&format!("Service: {s}\n"));
        }
        if let Some(a) = &e.agent {
            out.push_str(&format!("Agent: {a}\n"));
        }
        let request = format!(
            "{} {}",
            shown(&e.method, 32),
            shown(&format!("{}{}", e.host, e.path), REQUEST_SHOWN)
        );
        if slack {
            out.push_str(&format!("Request: `{request}`\n"));
        } else {
            out.push_str(&format!("Request: {request}\n"));
        }
        if !e.reason_codes.is_empty() {
            out.push_str(&format!("Reasons: {}\n", e.reason_codes.join(", ")));
        }
        out.push_str(&format!("Expires: {}\n", e.expires_at));
        if let Some(u) = &it.approve_url {
            out.push_str(&format!("Approve: {u}\n"));
        }
        if let Some(u) = &it.reject_url {
            out.push_str(&format!("Reject: {u}\n"));
        }
        out.push('\n');
    }
    if let Some(base) = links_base {
        out.push_str(&format!(
            "Airlock's approve and reject links always start with {base}/ui/link/ - do not use any other.\n"
        ));
    }
    out
}

/// Slack's three control characters in message text.
fn slack_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One channel's background task: queue, rate limit, digest timer, retries.
struct Worker {
    cfg: ChannelConfig,
    sink: Sink,
    links: Option<LinkCtx>,
    rx: mpsc::Receiver<Arc<Escalation>>,
    cap: usize,
    /// The channel's count of notifications dropped ([`Notifier::dropped`]).
    given_up: Arc<AtomicU64>,
}

struct Window {
    start: Instant,
    sent: u32,
    /// Whether this window's hold-over was already logged.
    held_logged: bool,
}

impl Worker {
    async fn run(mut self) {
        let mut pending = fair::FairQueue::new(self.cap);
        // This queue's give-ups, for the log's cadence (the shared count has the channel's
        // other drops too).
        let mut given_up: u64 = 0;
        let mut window = Window {
            start: Instant::now(),
            sent: 0,
            held_logged: false,
        };
        let mut next_digest = match self.cfg.mode {
            Mode::Digest(d) => Some(Instant::now() + d),
            _ => None,
        };
        loop {
            let deadline = match self.cfg.mode {
                Mode::Digest(_) => next_digest,
                _ if pending.is_empty() => None,
                _ => Some(window.start + self.cfg.rate_window),
            };
            let mut closed = false;
            let mut received = Vec::new();
            tokio::select! {
                ev = self.rx.recv() => match ev {
                    Some(e) => received.push(e),
                    None => closed = true,
                },
                _ = sleep_until_opt(deadline), if deadline.is_some() => {}
            }
            while let Ok(e) = self.rx.try_recv() {
                received.push(e);
            }
            for e in received {
                if let Some(out) = pending.push(e) {
                    crate::metrics::notification(&self.cfg.name, "given_up");
                    self.given_up.fetch_add(1, Ordering::Relaxed);
                    given_up += 1;
                    if given_up == 1 || given_up.is_multiple_of(100) {
                        tracing::warn!(
                            channel = %self.cfg.name,
                            review = %out.review_id,
                            agent = out.agent.as_deref().unwrap_or("-"),
                            given_up_total = given_up,
                            "notify: queue full; the newest notification of the agent with the most waiting was given up"
                        );
                    }
                }
            }
            let now = Instant::now();
            if now >= window.start + self.cfg.rate_window {
                window = Window {
                    start: now,
                    sent: 0,
                    held_logged: false,
                };
            }
            match self.cfg.mode {
                Mode::Digest(d) => {
                    let due = next_digest.is_some_and(|t| now >= t);
                    if due {
                        next_digest = Some(now + d);
                    }
                    if (due || closed) && !pending.is_empty() {
                        if window.sent < self.cfg.max_per_minute || closed {
                            let batch = pending.drain();
                            self.deliver(&batch, true).await;
                            window.sent += 1;
                        } else {
                            tracing::warn!(
                                channel = %self.cfg.name,
                                held = pending.len(),
                                "notify: rate limit reached; {} notifications held over to the next digest",
                                pending.len()
                            );
                        }
                    }
                }
                _ => {
                    while window.sent < self.cfg.max_per_minute {
                        let Some(e) = pending.pop() else { break };
                        self.deliver(std::slice::from_ref(&e), false).await;
                        window.sent += 1;
                    }
                    if !pending.is_empty() && !window.held_logged && !closed {
                        window.held_logged = true;
                        tracing::warn!(
                            channel = %self.cfg.name,
                            held = pending.len(),
                            max_per_minute = self.cfg.max_per_minute,
                            "notify: rate limit reached; {} notifications held over to the next minute",
                            pending.len()
                        );
                    }
                }
            }
            if closed {
                if !pending.is_empty() {
                    tracing::warn!(
                        channel = %self.cfg.name,
                        unsent = pending.len(),
                        "notify: shutting down with {} notifications unsent",
                        pending.len()
                    );
                }
                return;
            }
        }
    }

    /// Renders `batch` once (one set of link tokens) and sends it, retrying with exponential
    /// backoff. On final failure: a warning naming the channel and the reviews.
    async fn deliver(&self, batch: &[Arc<Escalation>], digest: bool) {
        let items: Vec<Item<'_>> = batch
            .iter()
            .map(|e| Item {
                escalation: e,
                approve_url: self
                    .links
                    .as_ref()
                    .and_then(|l| l.url(e, LinkAction::Approve)),
                reject_url: self
                    .links
                    .as_ref()
                    .and_then(|l| l.url(e, LinkAction::Reject)),
            })
            .collect();
        let links_base = self.links.as_ref().map(|l| l.base_url.as_str());
        let msg = self.sink.render(&items, digest, links_base);
        let retry = self.cfg.retry;
        let mut delay = retry.backoff;
        let mut last = NotifyError::Setup("not attempted".into());
        for attempt in 0..=retry.retries {
            match tokio::time::timeout(self.cfg.timeout, self.sink.send(&msg)).await {
                Ok(Ok(())) => {
                    crate::metrics::notification(&self.cfg.name, "sent");
                    tracing::debug!(channel = %self.cfg.name, reviews = batch.len(), "notify: sent");
                    return;
                }
                Ok(Err(e)) => last = e,
                Err(_) => last = NotifyError::Timeout(self.cfg.timeout),
            }
            if attempt < retry.retries {
                tracing::debug!(channel = %self.cfg.name, attempt = attempt + 1, error = %last,
                    "notify: delivery failed; retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                delay = delay.saturating_mul(2);
            }
        }
        crate::metrics::notification(&self.cfg.name, "failed");
        let ids: Vec<&str> = batch.iter().map(|e| e.review_id.as_str()).collect();
        tracing::warn!(
            channel = %self.cfg.name,
            reviews = %ids.join(","),
            attempts = retry.retries + 1,
            error = %last,
            "notify: notification could not be delivered; giving up"
        );
    }
}

async fn sleep_until_opt(t: Option<Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}
