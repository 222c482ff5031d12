//! How a held call's body reads for a reviewer: the money it moves (a refund's amount, or that
//! it refunds everything), the notable arguments, and the body itself (text as text, anything
//! else as its size and a hex dump of its head, never raw bytes). Everything here is the
//! agent's: the templates escape it.

use std::collections::HashMap;

use crate::gate::Review;

/// How much of a text body is shown.
const TEXT_SHOWN: usize = 16 * 1024;
/// How many bytes of a binary body are dumped in hex.
const HEX_SHOWN: usize = 256;

/// Arguments worth a reviewer's eye, in this order.
const NOTABLE: &[&str] = &[
    "customer",
    "charge",
    "payment_intent",
    "destination",
    "visibility",
    "force",
    "sha",
    "ref",
];

/// Each body field (JSON object or form) and query parameter, with every value it was given
/// (a body that is not UTF-8 has no fields).
fn fields(r: &Review, body: &[u8]) -> HashMap<String, Vec<String>> {
    let mut fields: HashMap<String, Vec<String>> = HashMap::new();
    if let Ok(serde_json::Value::Object(m)) = serde_json::from_slice::<serde_json::Value>(body) {
        for (k, v) in m {
            let text = match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            fields.entry(k).or_default().push(text);
        }
    } else if std::str::from_utf8(body).is_ok() {
        for (k, v) in form_urlencoded::parse(body) {
            fields
                .entry(k.into_owned())
                .or_default()
                .push(v.into_owned());
        }
    }
    // Query values join the body's: a key in both with different values shows as ambiguous.
    if let Some(q) = r.request.path_and_query.split_once('?').map(|x| x.1) {
        for (k, v) in form_urlencoded::parse(q.as_bytes()) {
            fields
                .entry(k.into_owned())
                .or_default()
                .push(v.into_owned());
        }
    }
    fields
}

/// The one value of `key`; a key given more than once with different values is shown as such.
fn one<'a>(fields: &'a HashMap<String, Vec<String>>, key: &str) -> Option<Result<&'a str, String>> {
    let values = fields.get(key)?;
    let first = values.first()?;
    if values.iter().all(|v| v == first) {
        Some(Ok(first))
    } else {
        Some(Err(format!(
            "{key} given {} times: {}",
            values.len(),
            values
                .iter()
                .map(|v| clip(v, 40))
                .collect::<Vec<_>>()
                .join(", ")
        )))
    }
}

fn clip(s: &str, n: usize) -> String {
    let mut out: String = s.chars().take(n).collect();
    if s.chars().nth(n).is_some() {
        out.push('…');
    }
    out
}

/// `minor` units of `currency` in major units (`1234 usd` -> `12.34 USD`).
fn amount_text(minor: u64, currency: &str) -> String {
    let c = currency.to_ascii_lowercase();
    match crate::rules::money::exponent(&c) {
        Some(0) => format!("{minor} {}", c.to_uppercase()),
        Some(e) => {
            let unit = 10u64.pow(e);
            format!(
                "{}.{:0width$} {}",
                minor / unit,
                minor % unit,
                c.to_uppercase(),
                width = e as usize
            )
        }
        None => format!("{minor} (minor units, unknown currency {})", clip(&c, 12)),
    }
}

/// Is this a refund (Stripe's refund endpoints), by its rule or, without one, by its path?
fn is_refund(r: &Review) -> bool {
    if let Some(tool) = &r.tool {
        return tool == "stripe.charges.refund" || tool.ends_with(".refunds.create");
    }
    let path = r.request.path_and_query.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    r.request.host == "api.stripe.com"
        && r.request.method == "POST"
        && matches!(
            parts.as_slice(),
            ["v1", "refunds"]
                | ["v1", "charges", _, "refund" | "refunds"]
                | ["v1", "application_fees", _, "refunds"]
        )
}

/// What a refund gives back: its amount, or everything of what it refunds (Stripe refunds
/// the whole remaining amount when `amount` is absent).
fn refund_text(r: &Review, fields: &HashMap<String, Vec<String>>) -> String {
    let of = ["charge", "payment_intent"]
        .iter()
        .find_map(|k| match one(fields, k) {
            Some(Ok(v)) => Some(clip(v, 80)),
            Some(Err(why)) => Some(format!("({why})")),
            None => None,
        })
        .or_else(|| {
            ["charge", "fee"]
                .iter()
                .find_map(|k| r.params.get(*k).map(|v| clip(v, 80)))
        })
        .unwrap_or_else(|| "(no charge or payment_intent named)".into());
    match one(fields, "amount") {
        None => format!("full refund of {of}"),
        Some(Err(why)) => format!("refund of {of}: {why}"),
        Some(Ok(a)) => match (a.trim().parse::<u64>(), one(fields, "currency")) {
            (Ok(minor), Some(Ok(c))) => format!("refund of {} from {of}", amount_text(minor, c)),
            (Ok(minor), _) => {
                format!("refund of {minor} (minor units of the currency of {of})")
            }
            (Err(_), _) => format!("refund of {of}: amount {:?} is not a number", clip(a, 40)),
        },
    }
}

/// The money a call moves, as a reviewer reads it, and its other notable arguments.
pub(super) fn arguments(r: &Review, body: &[u8]) -> (Option<String>, Vec<String>) {
    let fields = fields(r, body);
    let money = if is_refund(r) {
        Some(refund_text(r, &fields))
    } else {
        match (one(&fields, "amount"), one(&fields, "currency")) {
            (Some(Ok(a)), Some(Ok(c))) => a.trim().parse::<u64>().ok().map(|m| amount_text(m, c)),
            (Some(Err(why)), _) | (_, Some(Err(why))) => Some(why),
            _ => None,
        }
    };
    let mut args = Vec::new();
    for key in NOTABLE {
        match one(&fields, key) {
            Some(Ok(v)) => args.push(format!("{key}={}", clip(v, 80))),
            Some(Err(why)) => args.push(why),
            None => {}
        }
    }
    (money, args)
}

/// Invisible characters that reorder or hide text (bidi overrides and isolates, zero-width
/// characters, the byte-order mark) as visible `\u{…}` escapes: an agent must not make the
/// request a reviewer approves read as another (`"scratch\u{202E}"` reversing what follows).
pub(super) fn visible(s: &str) -> String {
    let hidden = |c: char| {
        matches!(c,
            '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
    };
    if !s.chars().any(hidden) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if hidden(c) {
            out.push_str(&format!("\\u{{{:04X}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Is `body` text a person can read: UTF-8 without control characters other than tab, CR, LF?
fn is_text(body: &[u8]) -> bool {
    std::str::from_utf8(body).is_ok_and(|s| {
        !s.chars()
            .any(|c| c.is_control() && !matches!(c, '\t' | '\r' | '\n'))
    })
}

/// A body as shown: text (its first 16 KiB), or its size and a hex dump of its head with the
/// printable ASCII beside it (a git push's commands and `PACK` header read there).
pub(super) fn body_text(body: &[u8]) -> String {
    if is_text(body) {
        let mut end = body.len().min(TEXT_SHOWN);
        while end < body.len() && std::str::from_utf8(&body[..end]).is_err() {
            end -= 1;
        }
        let mut t = String::from_utf8_lossy(&body[..end]).into_owned();
        if end < body.len() {
            t.push_str(&format!("\n[… {} more bytes not shown]", body.len() - end));
        }
        return t;
    }
    let shown = &body[..body.len().min(HEX_SHOWN)];
    let mut t = format!(
        "[binary body, {} bytes; the first {} in hex:]\n",
        body.len(),
        shown.len()
    );
    for (i, line) in shown.chunks(16).enumerate() {
        let hex: Vec<String> = line.iter().map(|b| format!("{b:02x}")).collect();
        let ascii: String = line
            .iter()
            .map(|&b| {
                if b.is_ascii_graphic() || b == b' ' {
                    b as char
                } else {
                    '.'
                }
            })
            .collect();
        t.push_str(&format!(
            "{:08x}  {:<47}  |{ascii}|\n",
            i * 16,
            hex.join(" ")
        ));
    }
    if body.len() > shown.len() {
        t.push_str(&format!("[… {} more bytes]\n", body.len() - shown.len()));
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bidi overrides and zero-width characters an agent put in a body are shown as escapes,
    /// so the text a reviewer reads is the text that will be sent.
    #[test]
    fn invisible_characters_are_shown_as_escapes() {
        let shown = visible("{\"name\":\"scratch\u{202E}cilbup\u{200B}\"}");
        assert_eq!(shown, "{\"name\":\"scratch\\u{202E}cilbup\\u{200B}\"}");
        assert_eq!(visible("plain text, é and 中文"), "plain text, é and 中文");
    }

    fn review(method: &str, host: &str, pq: &str, tool: Option<&str>, body: &[u8]) -> Review {
        Review::sample(method, host, pq, tool, body)
    }

    fn money(r: &Review) -> Option<String> {
        arguments(r, &r.request.body().expect("body")).0
    }

    #[test]
    fn refunds_show_their_amount_or_that_they_refund_everything() {
        let full = review(
            "POST",
            "api.stripe.com",
            "/v1/refunds",
            Some("stripe.refunds.create"),
            b"charge=ch_123",
        );
        assert_eq!(money(&full).as_deref(), Some("full refund of ch_123"));
        let part = review(
            "POST",
            "api.stripe.com",
            "/v1/refunds",
            None,
            b"charge=ch_123&amount=500",
        );
        assert_eq!(
            money(&part).as_deref(),
            Some("refund of 500 (minor units of the currency of ch_123)")
        );
        let priced = review(
            "POST",
            "api.stripe.com",
            "/v1/refunds",
            None,
            b"payment_intent=pi_9&amount=1999&currency=usd",
        );
        assert_eq!(
            money(&priced).as_deref(),
            Some("refund of 19.99 USD from pi_9")
        );
        let mut by_path = review(
            "POST",
            "api.stripe.com",
            "/v1/charges/ch_7/refund",
            Some("stripe.charges.refund"),
            b"",
        );
        by_path.params.insert("charge".into(), "ch_7".into());
        assert_eq!(money(&by_path).as_deref(), Some("full refund of ch_7"));
        let twice = review(
            "POST",
            "api.stripe.com",
            "/v1/refunds",
            None,
            b"charge=ch_1&amount=1&amount=100000",
        );
        assert_eq!(
            money(&twice).as_deref(),
            Some("refund of ch_1: amount given 2 times: 1, 100000")
        );
        let charge = review(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            None,
            b"amount=1000&currency=jpy",
        );
        assert_eq!(money(&charge).as_deref(), Some("1000 JPY"));
    }

    #[test]
    fn binary_bodies_are_a_size_and_a_hex_head() {
        let mut pack = b"00940000000000000000000000000000000000000000 1111111111111111111111111111111111111111 refs/heads/main\0report-status\n0000PACK".to_vec();
        pack.extend((0..=255u8).cycle().take(5000));
        let t = body_text(&pack);
        assert!(
            t.starts_with(&format!("[binary body, {} bytes;", pack.len())),
            "{t}"
        );
        assert!(t.contains("|0094000000000000|"), "{t}");
        assert!(t.contains("[… "), "{t}");
        assert!(
            t.chars().all(|c| !c.is_control() || c == '\n'),
            "no raw bytes: {t:?}"
        );
        assert_eq!(body_text(b"{\"a\":1}\n"), "{\"a\":1}\n");
        assert_eq!(body_text("héllo".as_bytes()), "héllo");
    }
}
