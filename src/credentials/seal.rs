//! Erasing what an agent sent as a secret from a request that will never be sent again: the
//! values of secret-named body fields (JSON at any depth, or a form) and query parameters, as
//! [`redact`] names them, whatever their length. The gate seals a review's stored request once
//! it is executed, rejected or expired (`gate/seal.rs`), so a card number, a webhook's secret or
//! a password does not stay on disk, in backups and in every reviewer's view until retention
//! removes the review.

use super::redact::{self, REDACTED};

/// `body` with the value of every secret-named field replaced by [`REDACTED`], and how many
/// were. JSON is written again (keys in order, no spacing) when anything was replaced; a form
/// keeps every other pair byte for byte. Anything else is returned as it is.
pub fn seal_body(body: &[u8]) -> (Vec<u8>, usize) {
    if let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(body) {
        let n = seal_json(&mut v, false, false);
        if n > 0 {
            if let Ok(out) = serde_json::to_vec(&v) {
                return (out, n);
            }
        }
        return (body.to_vec(), 0);
    }
    let Ok(text) = std::str::from_utf8(body) else {
        return (body.to_vec(), 0);
    };
    let mut n = 0;
    let pairs: Vec<String> = text
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((raw_key, raw_value)) if secret_form_pair(raw_key, raw_value) => {
                n += 1;
                format!("{raw_key}={REDACTED}")
            }
            _ => pair.to_string(),
        })
        .collect();
    if n == 0 {
        return (body.to_vec(), 0);
    }
    (pairs.join("&").into_bytes(), n)
}

/// `path_and_query` with the value of every secret-named query parameter replaced by
/// [`REDACTED`] (as [`redact::mask_query`] shows it), and how many were.
pub fn seal_query(path_and_query: &str) -> (String, usize) {
    let Some((_, query)) = path_and_query.split_once('?') else {
        return (path_and_query.to_string(), 0);
    };
    let n = query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(name, value)| {
            !value.is_empty()
                && *value != REDACTED
                && redact::is_secret_query_param(&redact::decode(name))
        })
        .count();
    if n == 0 {
        return (path_and_query.to_string(), 0);
    }
    (redact::mask_query(path_and_query), n)
}

/// Credentials inside URL values of `body` (JSON strings at any depth, or form values) that no
/// secret-named field holds: a URL's password (`https://user:PASS@host`) and its secret-named
/// query parameters (`https://hook.example/?token=T`): a webhook's destination, say. As
/// written and decoded, longest first, each once; and how many credentials they are. Sealing
/// erases them wherever they show.
pub fn url_secret_values(body: &[u8]) -> (Vec<String>, usize) {
    let mut urls = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        collect_urls(&v, &mut urls);
    } else if let Ok(text) = std::str::from_utf8(body) {
        for pair in text.split('&') {
            if let Some((_, value)) = pair.split_once('=') {
                let value = redact::decode(value);
                if is_url(&value) {
                    urls.push(value);
                }
            }
        }
    }
    let (mut out, mut n): (Vec<String>, usize) = (Vec::new(), 0);
    for url in &urls {
        for secret in secrets_in_url(url) {
            let before = out.len();
            for v in [redact::decode(&secret), secret] {
                if v.len() >= MIN_SECRET && v != REDACTED && !out.contains(&v) {
                    out.push(v);
                }
            }
            n += usize::from(out.len() > before);
        }
    }
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    (out, n)
}

/// Values shorter than this are not masked where they echo (as `redact` does): too common.
const MIN_SECRET: usize = 6;

fn is_url(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

fn collect_urls(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => m.values().for_each(|item| collect_urls(item, out)),
        serde_json::Value::Array(items) => items.iter().for_each(|item| collect_urls(item, out)),
        serde_json::Value::String(s) if is_url(s) => out.push(s.clone()),
        _ => {}
    }
}

/// The password of `url`'s userinfo and the values of its secret-named query parameters, raw.
fn secrets_in_url(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if let Some((userinfo, _)) = authority.rsplit_once('@') {
        if let Some((_, password)) = userinfo.split_once(':') {
            out.push(password.to_string());
        }
    }
    if let Some((_, query)) = rest.split_once('?') {
        let query = query.split('#').next().unwrap_or_default();
        for (name, value) in query.split('&').filter_map(|p| p.split_once('=')) {
            if !value.is_empty() && redact::is_secret_query_param(&redact::decode(name)) {
                out.push(value.to_string());
            }
        }
    }
    out
}

/// Replaces the secret leaves under `v` (as `secret_body_values` finds them) and counts them.
fn seal_json(v: &mut serde_json::Value, secret: bool, within: bool) -> usize {
    match v {
        serde_json::Value::Object(m) => m
            .iter_mut()
            .map(|(k, item)| {
                let own = within || redact::is_secret_body_field(k);
                seal_json(item, own, within || redact::holds_secrets(k))
            })
            .sum(),
        serde_json::Value::Array(items) => items
            .iter_mut()
            .map(|item| seal_json(item, secret, within))
            .sum(),
        serde_json::Value::String(s)
            if secret && !s.is_empty() && s != REDACTED && !redact::is_public_key(s) =>
        {
            *v = serde_json::Value::String(REDACTED.into());
            1
        }
        serde_json::Value::Number(_) if secret => {
            *v = serde_json::Value::String(REDACTED.into());
            1
        }
        _ => 0,
    }
}

/// Is this form pair's value a secret: its key's last bracketed part is secret-named, or an
/// outer part holds secrets (`card[number]`)?
fn secret_form_pair(raw_key: &str, raw_value: &str) -> bool {
    if raw_value.is_empty() || raw_value == REDACTED {
        return false;
    }
    let key = redact::decode(raw_key);
    let parts: Vec<&str> = key.split(['[', ']']).filter(|p| !p.is_empty()).collect();
    let Some((own, outer)) = parts.split_last() else {
        return false;
    };
    (redact::is_secret_body_field(own) || outer.iter().any(|p| redact::holds_secrets(p)))
        && !redact::is_public_key(&redact::decode(raw_value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Table: each body, what it seals to, and how many values went.
    #[test]
    fn seal_body_erases_secret_values_of_any_length() {
        let cases: &[(&[u8], &str, usize)] = &[
            (
                b"amount=500&card[number]=4242424242424242&card[cvc]=123&currency=usd",
                "amount=500&card[number]=[redacted]&card[cvc]=[redacted]&currency=usd",
                2,
            ),
            (
                br#"{"config":{"url":"https://h.example","secret":"s3"},"name":"web","password":{"new":42}}"#,
                r#"{"config":{"secret":"[redacted]","url":"https://h.example"},"name":"web","password":{"new":"[redacted]"}}"#,
                2,
            ),
            (
                br#"{"key":"ssh-ed25519 AAAAC3Nz k","title":"deploy"}"#,
                r#"{"key":"ssh-ed25519 AAAAC3Nz k","title":"deploy"}"#,
                0,
            ),
            (b"plain text, no pairs", "plain text, no pairs", 0),
            (b"a=1&token=&b", "a=1&token=&b", 0),
            (b"payload=%7B%22x%22%7D&x=1", "payload=[redacted]&x=1", 1),
        ];
        for (body, want, n) in cases {
            let (got, count) = seal_body(body);
            assert_eq!(
                String::from_utf8_lossy(&got),
                *want,
                "{}",
                String::from_utf8_lossy(body)
            );
            assert_eq!(count, *n, "{}", String::from_utf8_lossy(body));
            // Sealing twice changes nothing more.
            assert_eq!(seal_body(&got), (got.clone(), 0));
        }
    }

    /// Review of session 23: a webhook's destination URL carrying a token (or a password)
    /// stayed whole in a sealed review, in its body, arguments and explanation.
    #[test]
    fn url_secret_values_are_found_in_json_and_forms() {
        let json = br#"{"config":{"url":"https://hook.example/in?token=HOOKTOKEN_1&x=1"},"mirror":"https://u:PASSW0RD@git.example/r.git","plain":"https://ok.example/?page=2"}"#;
        let values = |b: &[u8]| url_secret_values(b);
        assert_eq!(
            values(json),
            (vec!["HOOKTOKEN_1".into(), "PASSW0RD".into()], 2)
        );
        let form = b"url=https%3A%2F%2Fhook.example%2F%3Fapi_key%3DKEY%252B123&other=1";
        assert_eq!(
            values(form),
            (vec!["KEY%2B123".into(), "KEY+123".into()], 1)
        );
        assert_eq!(values(b"not a body"), (vec![], 0));
        let short = br#"{"u":"https://a.example/?token=abc"}"#;
        assert_eq!(values(short), (vec![], 0), "too short to mask");
    }

    #[test]
    fn seal_query_erases_secret_params_only() {
        assert_eq!(
            seal_query("/r?access_token=abc&per_page=1&sig=z"),
            (
                "/r?access_token=[redacted]&per_page=1&sig=[redacted]".to_string(),
                2
            )
        );
        assert_eq!(
            seal_query("/r?per_page=1"),
            ("/r?per_page=1".to_string(), 0)
        );
        assert_eq!(seal_query("/r"), ("/r".to_string(), 0));
        let (sealed, _) = seal_query("/r?token=abc");
        assert_eq!(seal_query(&sealed), (sealed.clone(), 0));
    }
}
