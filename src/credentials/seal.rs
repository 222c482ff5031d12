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
