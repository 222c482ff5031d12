//! Notifications for escalated reviews: webhooks (JSON or Slack) and email, per event or as a
//! digest, rate limited and retried, with optional one-click approve/reject links.

pub mod config;
pub mod links;

pub use config::{ChannelConfig, ChannelKind, Mode, NotifyConfig, RetryPolicy, WebhookFormat};
pub use links::{load_or_create_key, LinkAction, LinkClaims, LinkError, LinkSigner};
