//! One-click links in clear text are refused: a link lets whoever reads it decide as its
//! reviewer, so a `reviewer` channel must reach its reader encrypted (an `https://` webhook, an
//! email channel with STARTTLS) and the links must point at an `https://` base_url, unless
//! the hop stays on this host (loopback) or `notify.allow_plaintext_links = true` says the
//! operator knows (a network that encrypts below HTTP, say).

use super::config::{ChannelConfig, ChannelKind, NotifyConfigError};

/// What the refusals say to do instead.
const FIX: &str =
    "set notify.allow_plaintext_links = true only if that path is encrypted otherwise";

/// Is `host` (a URL's host, brackets allowed, or an SMTP host) this machine?
fn loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    match h.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => {
            let h = h.trim_end_matches('.').to_ascii_lowercase();
            h == "localhost" || h.ends_with(".localhost")
        }
    }
}

/// Is `url` plain `http://` to another host?
fn plain_http(url: &http::Uri) -> bool {
    url.scheme_str() == Some("http") && !url.host().is_some_and(loopback)
}

/// `Err` naming the first field through which one-click links would travel in clear text. Links
/// are minted only with a `base_url`, for channels that name a `reviewer`.
pub(super) fn refuse_plaintext_links(
    base_url: Option<&str>,
    channels: &[ChannelConfig],
) -> Result<(), NotifyConfigError> {
    let Some(base) = base_url else {
        return Ok(());
    };
    let Some((_, first)) = channels
        .iter()
        .enumerate()
        .find_map(|(i, c)| c.reviewer.as_ref().map(|r| (i, r)))
    else {
        return Ok(());
    };
    if base.parse::<http::Uri>().is_ok_and(|u| plain_http(&u)) {
        return Err(NotifyConfigError {
            field: "notify.base_url".into(),
            message: format!(
                "is http:// and channels carry one-click links (for {first}, …): each link, \
                 read anywhere on its way, decides as its reviewer; use https:// (a reverse \
                 proxy with TLS in front of the admin listener), or {FIX}"
            ),
        });
    }
    for (i, c) in channels.iter().enumerate() {
        let Some(reviewer) = &c.reviewer else {
            continue;
        };
        let (field, how) = match &c.kind {
            // A URL kept outside the config file is checked once read.
            ChannelKind::Webhook { url, .. } if url.uri.as_ref().is_some_and(plain_http) => {
                let field = match &url.source {
                    None => "url",
                    Some(crate::secret_file::SecretSource::File(_)) => "url_file",
                    Some(crate::secret_file::SecretSource::Env(_)) => "url_env",
                };
                (field, "an http:// URL")
            }
            ChannelKind::Email {
                smtp_host,
                starttls: false,
                ..
            } if !loopback(smtp_host) => ("starttls", "email without STARTTLS"),
            _ => continue,
        };
        return Err(NotifyConfigError {
            field: format!("notify.channels[{i}].{field}"),
            message: format!(
                "this channel carries {reviewer}'s one-click links over {how}: whoever reads \
                 them on the way can decide as {reviewer}; use https:// (or STARTTLS), drop \
                 `reviewer`, or {FIX}"
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::loopback;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1",
            "[::1]",
            "::1",
            "localhost",
            "LOCALHOST.",
            "a.localhost",
        ] {
            assert!(loopback(h), "{h}");
        }
        for h in [
            "airlock.example.com",
            "10.0.0.1",
            "[2001:db8::1]",
            "localhost.example",
        ] {
            assert!(!loopback(h), "{h}");
        }
    }
}
