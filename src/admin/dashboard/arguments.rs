//! A held call's arguments as a reviewer reads them: the money it moves (a refund's amount, or
//! that it refunds everything), the account it acts on (`Stripe-Account`, `Stripe-Context`) and
//! its notable arguments. A parameter that mainstream
//! frameworks may read more than one way (given twice, `[amount]`, after a `;`, a JSON body
//! read as a form: [`crate::rules::readings`]) shows every reading, never one of them as *the*
//! value, and is named for the page's warning. Everything here is the agent's: the templates
//! escape it.

use crate::gate::Review;
use crate::rules::readings::{Reading, Readings, Spelling};

/// Arguments worth a reviewer's eye, in this order. A key with no brackets shows its bracketed
/// sub-keys too (`destination` shows `destination[account]`: [`SUB_KEYS_SHOWN`]).
const NOTABLE: &[&str] = &[
    "customer",
    "charge",
    "payment_intent",
    // where a payment's money goes (form and JSON spellings; legacy `destination[account]`)
    "destination",
    "destination[account]",
    "destination[amount]",
    "transfer_data",
    "transfer_data[destination]",
    "transfer_data[amount]",
    "on_behalf_of",
    "application_fee_amount",
    "payment_intent_data[transfer_data][destination]",
    "payment_intent_data[on_behalf_of]",
    "subscription_data[transfer_data][destination]",
    "visibility",
    // who gets access, and how much (GitHub collaborators, members, repositories, branches)
    "permission",
    "role",
    "private",
    "archived",
    "enforce_admins",
    "allow_force_pushes",
    "allow_deletions",
    // where a webhook delivers (form spelling; a JSON body's `config.url`: [`config_fields`]),
    // a webhook config's or a Stripe webhook endpoint's own `url`, and whether its TLS
    // certificate is checked
    "config[url]",
    "config[insecure_ssl]",
    "url",
    "insecure_ssl",
    // where a repository goes (GitHub's transfer)
    "new_owner",
    "new_name",
    "force",
    "sha",
    "ref",
];

/// What the dashboard shows of a call's arguments.
pub(super) struct Arguments {
    /// The money it moves.
    pub money: Option<String>,
    /// Its notable arguments.
    pub args: Vec<String>,
    /// The parameters shown that read more than one way.
    pub ambiguous: Vec<String>,
}

/// One parameter as shown: its value, or every value it may be read as and why.
enum Param<'a> {
    One(&'a str),
    Many { values: Vec<&'a str>, why: String },
}

impl<'a> Param<'a> {
    fn values(&self) -> Vec<&'a str> {
        match self {
            Param::One(v) => vec![v],
            Param::Many { values, .. } => values.clone(),
        }
    }

    fn why(&self) -> Option<&str> {
        match self {
            Param::One(_) => None,
            Param::Many { why, .. } => Some(why),
        }
    }
}

/// Readings of one parameter shown at most, and notes on them: an agent can send thousands,
/// and every page that lists the review builds its summary.
const SHOWN: usize = 8;

/// Bracketed sub-keys of one notable key shown at most (`destination[account]`); past them,
/// how many more.
const SUB_KEYS_SHOWN: usize = 8;

/// Is `key` (`url`, `config[url]`, `after_completion[redirect][url]`) a URL to show as
/// [`show_url`] does?
fn is_url_key(key: &str) -> bool {
    key == "url" || key.ends_with("[url]")
}

/// The parameters of one call, noting those read more than one way as they are looked up.
struct Lookup<'a> {
    readings: &'a Readings,
    ambiguous: Vec<String>,
}

impl<'a> Lookup<'a> {
    fn get(&mut self, key: &str) -> Option<Param<'a>> {
        let all = self.readings.get(key);
        let mut distinct: std::collections::HashSet<&'a str> = std::collections::HashSet::new();
        let mut values: Vec<&'a str> = Vec::new();
        for r in all {
            if distinct.insert(r.value.as_str()) && values.len() < SHOWN {
                values.push(&r.value);
            }
        }
        // Past the cap, the smallest and largest numbers are shown whatever their place: an
        // agent must not hide a $50,000 amount behind eight small ones.
        if distinct.len() > values.len() {
            if let Some((low, high)) = range(all) {
                for v in [low, high] {
                    if !values.contains(&v) {
                        values.push(v);
                    }
                }
            }
        }
        match (distinct.len(), values.as_slice()) {
            (_, []) => None,
            (1, [one, ..]) => Some(Param::One(one)),
            (ways, _) => {
                if !self.ambiguous.iter().any(|k| k == key) {
                    self.ambiguous.push(key.to_string());
                }
                let why = why(key, all, ways);
                Some(Param::Many { values, why })
            }
        }
    }
}

/// The smallest and the largest of the readings that are whole numbers, as written.
fn range(all: &[Reading]) -> Option<(&str, &str)> {
    let numbers = all
        .iter()
        .filter_map(|r| Some((r.value.trim().parse::<u64>().ok()?, r.value.as_str())));
    let low = numbers.clone().min_by_key(|(n, _)| *n)?;
    let high = numbers.max_by_key(|(n, _)| *n)?;
    Some((low.1, high.1))
}

/// `amount read 2 ways: amount=100, [amount]=5000000 (Rack 2 and qs read [amount] as amount)`.
fn why(key: &str, all: &[Reading], ways: usize) -> String {
    let mut listed: Vec<String> = all
        .iter()
        .take(SHOWN)
        .map(|r| format!("{}={}", clip(&r.key, 40), clip(&r.value, 40)))
        .collect();
    if all.len() > SHOWN {
        listed.push(format!("and {} more", all.len() - SHOWN));
        if let Some((low, high)) = range(all) {
            listed.push(format!(
                "ranging from {} to {}",
                clip(low, 40),
                clip(high, 40)
            ));
        }
    }
    let mut notes: Vec<String> = Vec::new();
    let written = all
        .iter()
        .filter(|r| r.spelling == Spelling::AsWritten)
        .count();
    if written > 1 {
        notes.push(format!("given {written} times"));
    }
    for r in all
        .iter()
        .filter(|r| r.spelling == Spelling::Brackets)
        .take(SHOWN)
    {
        let note = format!("Rack 2 and qs read {} as {key}", clip(&r.key, 40));
        if !notes.contains(&note) {
            notes.push(note);
        }
    }
    if all.iter().any(|r| r.spelling == Spelling::Semicolon) {
        notes.push("Rack 1 and Go before 1.17 split at `;`".into());
    }
    if all.iter().any(|r| r.spelling == Spelling::RackBlanks) {
        notes.push("Rack drops a blank after `&` and a trailing NUL".into());
    }
    if all.iter().any(|r| r.spelling == Spelling::JsonAsForm) {
        notes.push("the JSON body read as a form sets it".into());
    }
    format!(
        "{key} read {ways} ways: {} ({})",
        listed.join(", "),
        notes.join("; ")
    )
}

/// `text`, then why each parameter read more than one way did: `1.00 USD or … — amount read…`.
fn with_why(text: String, params: &[Option<&Param<'_>>]) -> String {
    let whys: Vec<&str> = params.iter().flatten().filter_map(|p| p.why()).collect();
    if whys.is_empty() {
        text
    } else {
        format!("{text} \u{2014} {}", whys.join("; "))
    }
}

pub(super) fn clip(s: &str, n: usize) -> String {
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

/// Every reading of an amount in every reading of its currency: `1.00 USD or 50000.00 USD`.
fn amounts_text(amounts: &[&str], currencies: &[&str]) -> String {
    let mut out: Vec<String> = Vec::new();
    for a in amounts {
        for c in currencies {
            let t = match a.trim().parse::<u64>() {
                Ok(minor) => amount_text(minor, c),
                Err(_) => format!("not a number: {:?}", clip(a, 40)),
            };
            if !out.contains(&t) {
                out.push(t);
            }
        }
    }
    out.join(" or ")
}

/// Values as shown side by side: `ch_small or ch_big`.
fn either(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| clip(v, 80))
        .collect::<Vec<_>>()
        .join(" or ")
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

/// The charge or application fee a refund's path names (`/v1/charges/{charge}/refunds`): what
/// Stripe refunds, whatever the body names.
fn path_refunded(r: &Review) -> Option<String> {
    let path = r.request.path_and_query.split('?').next().unwrap_or("");
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["v1", "charges", id, "refund" | "refunds"] | ["v1", "application_fees", id, "refunds"] => {
            Some(
                percent_encoding::percent_decode_str(id)
                    .decode_utf8_lossy()
                    .into_owned(),
            )
        }
        _ => None,
    }
}

/// What a refund gives back: its amount, or everything of what it refunds (Stripe refunds
/// the whole remaining amount when `amount` is absent). What it refunds is the path's charge
/// when the path names one; a body naming another is shown too, and warned of.
fn refund_text(r: &Review, params: &mut Lookup<'_>) -> String {
    let charge = params.get("charge");
    let intent = params.get("payment_intent");
    let named = charge.as_ref().or(intent.as_ref());
    let path_id = path_refunded(r);
    let mut others: Vec<String> = Vec::new();
    let of = match (&path_id, named) {
        (Some(id), _) => {
            for (key, p) in [("charge", &charge), ("payment_intent", &intent)] {
                for v in p.iter().flat_map(Param::values) {
                    let other = format!("{key}={}", clip(v, 80));
                    if v != id && !others.contains(&other) {
                        others.push(other);
                    }
                }
            }
            clip(id, 80)
        }
        (None, Some(p)) => either(&p.values()),
        (None, None) => ["charge", "fee"]
            .iter()
            .find_map(|k| r.params.get(*k).map(|v| clip(v, 80)))
            .unwrap_or_else(|| "(no charge or payment_intent named)".into()),
    };
    let amount = params.get("amount");
    let currency = params.get("currency");
    let mut text = match (&amount, &currency) {
        (None, _) => format!("full refund of {of}"),
        (Some(Param::One(a)), _) if a.trim().parse::<u64>().is_err() => {
            format!("refund of {of}: amount {:?} is not a number", clip(a, 40))
        }
        (Some(a), Some(c)) => format!(
            "refund of {} from {of}",
            amounts_text(&a.values(), &c.values())
        ),
        (Some(a), None) => format!(
            "refund of {} (minor units of the currency of {of})",
            either(&a.values())
        ),
    };
    if !others.is_empty() {
        let both = format!("the path names {of}, the body {}", others.join(", "));
        text.push_str(&format!(" ({both})"));
        params.ambiguous.push(format!("what is refunded ({both})"));
    }
    let shown = if path_id.is_some() { None } else { named };
    with_why(text, &[shown, amount.as_ref(), currency.as_ref()])
}

/// The money a call moves, as a reviewer reads it, and its other notable arguments.
pub(super) fn arguments(r: &Review, body: &[u8]) -> Arguments {
    let query = r.request.path_and_query.split_once('?').map_or("", |x| x.1);
    let readings = Readings::of(query, body);
    let mut params = Lookup {
        readings: &readings,
        ambiguous: Vec::new(),
    };
    let money = if is_refund(r) {
        Some(refund_text(r, &mut params))
    } else {
        // An invoice item may give a unit amount and a quantity instead of an amount.
        let amount = params.get("amount").or_else(|| params.get("unit_amount"));
        let quantity = params.get("quantity");
        let money = match (amount.as_ref(), params.get("currency")) {
            (Some(a), Some(c)) => Some(with_why(
                amounts_text(&a.values(), &c.values()),
                &[Some(a), Some(&c)],
            )),
            // Always shown, never dropped: `99999999 minor units, currency not given`.
            (Some(a), None) => {
                let shown: Vec<String> = a
                    .values()
                    .iter()
                    .map(|v| match v.trim().parse::<u64>() {
                        Ok(m) => format!("{m} minor units"),
                        Err(_) => format!("not a number: {:?}", clip(v, 40)),
                    })
                    .collect();
                Some(with_why(
                    format!("{}, currency not given", shown.join(" or ")),
                    &[Some(a)],
                ))
            }
            (None, Some(p @ Param::Many { .. })) => {
                Some(with_why(either(&p.values()), &[Some(&p)]))
            }
            _ => None,
        };
        match (money, &quantity) {
            (Some(m), Some(q)) => Some(with_why(
                format!("{m} × quantity {}", either(&q.values())),
                &[Some(q)],
            )),
            (m, _) => m,
        }
    };
    let (mut args, accounts_twice) = accounts(r);
    for key in NOTABLE {
        show_param(&mut params, key, &mut args);
        if !key.contains('[') {
            // Bracketed sub-keys (`destination[account]`), but those listed themselves.
            let prefix = format!("{key}[");
            let mut subs: Vec<&str> = readings
                .names()
                .filter(|n| n.starts_with(&prefix) && !NOTABLE.contains(n))
                .collect();
            subs.sort_unstable();
            for sub in subs.iter().take(SUB_KEYS_SHOWN) {
                show_param(&mut params, sub, &mut args);
            }
            if subs.len() > SUB_KEYS_SHOWN {
                args.push(format!(
                    "and {} more {key}[…] keys (see the body)",
                    subs.len() - SUB_KEYS_SHOWN
                ));
            }
        }
    }
    let mut ambiguous = params.ambiguous;
    ambiguous.extend(accounts_twice);
    let body_read = if super::views::is_git_push(r) {
        &[][..]
    } else {
        body
    };
    args.extend(config_fields(body_read));
    let repeated = repeated_keys(query, body_read, &ambiguous);
    ambiguous.extend(repeated);
    Arguments {
        money,
        args,
        ambiguous,
    }
}

/// `key` as shown among the arguments: its value (a URL as [`show_url`] shows it), or every
/// reading of it and why.
fn show_param(params: &mut Lookup<'_>, key: &str, args: &mut Vec<String>) {
    match params.get(key) {
        Some(Param::One(v)) if is_url_key(key) => args.push(format!("{key}={}", show_url(v))),
        Some(Param::One(v)) => args.push(format!("{}={}", clip(key, 80), clip(v, 80))),
        Some(Param::Many { why, .. }) => args.push(why),
        None => {}
    }
}

/// Headers that say which account a Stripe call acts on (a connected account, or a context
/// naming one): always shown, whatever the rule extracts.
const ACCOUNT_HEADERS: &[&str] = &["Stripe-Account", "Stripe-Context"];

/// `on account acct_… (Stripe-Account)` for every value of every [`ACCOUNT_HEADERS`] header in
/// the stored request, and the headers given more than once (a server may act on either).
fn accounts(r: &Review) -> (Vec<String>, Vec<String>) {
    let mut shown = Vec::new();
    let mut twice = Vec::new();
    for name in ACCOUNT_HEADERS {
        let values: Vec<&str> = r
            .request
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect();
        for v in &values {
            shown.push(format!("on account {} ({name})", clip(v, 80)));
        }
        if values.len() > 1 {
            twice.push(format!("header `{name}` (given {} times)", values.len()));
        }
    }
    (shown, twice)
}

/// A URL as a reviewer must read it: its scheme and authority in full (up to 200 characters:
/// where it goes), only the rest clipped; user-info before an `@`, which a long host-like
/// prefix can pass off as the host, a backslash, which browsers' parsers and the RFC's read
/// differently, and a host that is not ASCII (a look-alike: [`host_note`]) are said in words.
fn show_url(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let mut shown = if scheme.is_empty() {
        clip(authority, 200)
    } else {
        format!("{}://{}", clip(scheme, 20), clip(authority, 200))
    };
    shown.push_str(&clip(tail, 60));
    if let Some((userinfo, host)) = authority.rsplit_once('@') {
        shown.push_str(&format!(
            " [host {}; {} characters of user-info before it]",
            clip(host, 200),
            userinfo.chars().count()
        ));
    }
    if let Some(note) = host_note(authority) {
        shown.push_str(&note);
    }
    if url.contains('\\') {
        // Browsers' parser (WHATWG) ends the authority at a backslash too.
        let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
        let other = rest[..end]
            .rsplit_once('@')
            .map_or(&rest[..end], |(_, h)| h);
        let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        if other != host {
            shown.push_str(&format!(
                " [contains a backslash: host {} as the RFC reads it, {} as browsers do]",
                clip(host, 200),
                clip(other, 200)
            ));
        } else {
            shown.push_str(" [contains a backslash: parsers disagree on the host]");
        }
    }
    shown
}

/// What a URL's host (in `authority`, after any user-info, before any port) resolves as, when
/// that is not what it reads as: one with characters outside ASCII (`ci.аcme-corp.com`, a
/// Cyrillic `а`) or percent-encoded is looked up by its IDNA (punycode) form, which is not the
/// name a reviewer takes it for.
fn host_note(authority: &str) -> Option<String> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if host_port.starts_with('[') {
        host_port.split_inclusive(']').next().unwrap_or(host_port)
    } else {
        host_port.split(':').next().unwrap_or(host_port)
    };
    let encoded = host.contains('%');
    if host.is_ascii() && !encoded {
        return None;
    }
    let decoded = percent_encoding::percent_decode_str(host).decode_utf8_lossy();
    let what = if host.is_ascii() {
        "host is percent-encoded"
    } else {
        "host is not ASCII"
    };
    Some(match idna::domain_to_ascii(&decoded) {
        Ok(ascii) => format!(" [{what}: resolves as {}]", clip(&ascii, 200)),
        Err(_) => {
            format!(" [{what}, and no valid international name: clients read it differently]")
        }
    })
}

/// A JSON body's `config.url` (where a webhook delivers, as [`show_url`] shows it) and
/// `config.insecure_ssl` (whether its certificate is checked), as serde_json reads them (the
/// last of a key given twice: the page warns of those). Its bytes are not searched for `config`
/// first: `"c\u006fnfig"` names the same key.
fn config_fields(body: &[u8]) -> Vec<String> {
    if !body.trim_ascii_start().starts_with(b"{") {
        return Vec::new();
    }
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) else {
        return Vec::new();
    };
    let text = |x: &serde_json::Value| x.as_str().map_or_else(|| x.to_string(), str::to_string);
    let mut out = Vec::new();
    if let Some(url) = v.pointer("/config/url") {
        out.push(format!("config.url={}", show_url(&text(url))));
    }
    if let Some(ssl) = v.pointer("/config/insecure_ssl") {
        out.push(format!("config.insecure_ssl={}", clip(&text(ssl), 40)));
    }
    out
}

/// Is `body` JSON with a key given twice in some object (parsers differ on which value
/// counts)?
pub(super) fn json_key_twice(body: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Value>(body).is_ok()
        && crate::rules::fields::strict_json(body).is_err()
}

/// Keys given twice anywhere in the body or query, which servers read differently (Go and
/// GitHub take the last JSON value, others the first): named whatever the field, listed or
/// not, those whose values differ first (`duplicates.rs`); not those already named.
fn repeated_keys(query: &str, body: &[u8], named: &[String]) -> Vec<String> {
    let dups: Vec<super::duplicates::Duplicate> = super::duplicates::duplicates(query, body)
        .into_iter()
        .filter(|d| !named.contains(&d.key))
        .collect();
    let mut priority: Vec<&str> = vec!["amount", "currency"];
    priority.extend(NOTABLE);
    super::duplicates::warning_items(&dups, &priority)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn review(method: &str, host: &str, pq: &str, tool: Option<&str>, body: &[u8]) -> Review {
        Review::sample(method, host, pq, tool, body)
    }

    /// Review of session 16: a key given twice in a field no summary lists (then `permission`
    /// on add-collaborator, now listed) showed no warning; GitHub reads the last value.
    #[test]
    fn a_key_given_twice_anywhere_is_named() {
        let r = review(
            "PUT",
            "api.github.com",
            "/repos/o/r/collaborators/eve",
            Some("github.repos.add-collaborator"),
            br#"{"note":"pull","not\u0065":"admin","permission":"pull","permissio\u006e":"admin"}"#,
        );
        let a = arguments(&r, &r.request.body().expect("body"));
        assert!(
            a.ambiguous
                .iter()
                .any(|x| x == "JSON key `note` (given twice, values differ)"),
            "{:?}",
            a.ambiguous
        );
        assert!(
            a.ambiguous.iter().any(|x| x == "permission"),
            "{:?}",
            a.ambiguous
        );
        assert!(
            a.args
                .iter()
                .any(|x| x.starts_with("permission read 2 ways: permission=pull, permission=admin")),
            "{:?}",
            a.args
        );
        let r = review(
            "POST",
            "api.stripe.com",
            "/v1/customers?name=a&name=b",
            Some("stripe.customers.create"),
            b"email=a&description=x&description=y",
        );
        let a = arguments(&r, &r.request.body().expect("body"));
        assert!(
            a.ambiguous
                .iter()
                .any(|x| x.contains("body field `description`")),
            "{:?}",
            a.ambiguous
        );
        assert!(
            a.ambiguous.iter().any(|x| x.contains("query field `name`")),
            "{:?}",
            a.ambiguous
        );
        let plain = review(
            "POST",
            "api.stripe.com",
            "/v1/customers",
            None,
            b"email=a&name=b",
        );
        assert!(arguments(&plain, b"email=a&name=b").ambiguous.is_empty());
    }

    fn money(r: &Review) -> Option<String> {
        arguments(r, &r.request.body().expect("body")).money
    }

    /// Regression: every distinct amount was shown in every currency, deduplicated by a linear
    /// search, so 3,000 of each in an 80 KB held body took hours and gigabytes on every page
    /// that lists the review.
    #[test]
    fn thousands_of_readings_show_a_bounded_summary() {
        let mut body = String::new();
        for i in 0..3000 {
            body.push_str(&format!("amount={i}&currency=c{i}&"));
        }
        let r = review(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            Some("stripe.charges.create"),
            body.as_bytes(),
        );
        let shown = money(&r).expect("money");
        assert!(shown.len() < 8_000, "{} bytes", shown.len());
        assert!(shown.contains("amount read 3000 ways"), "{shown}");
        assert!(shown.contains("and 2992 more"), "{shown}");
    }

    /// Security review: nine readings of an amount showed the first eight and "and 1 more",
    /// hiding the largest ($50,000). The largest and smallest show whatever the cap.
    #[test]
    fn the_largest_reading_shows_whatever_the_cap() {
        let cases: &[(&str, &[&str])] = &[
            (
                "amount=101&amount=102&amount=103&amount=104&amount=105&amount=106&amount=107&amount=108&amount=5000000&currency=usd",
                &["50000.00 USD", "1.01 USD", "ranging from 101 to 5000000", "and 1 more"],
            ),
            (
                "amount=5000000&amount=101&amount=102&amount=103&amount=104&amount=105&amount=106&amount=107&amount=108&amount=1&currency=usd",
                &["50000.00 USD", "0.01 USD", "ranging from 1 to 5000000"],
            ),
            (
                "amount=1&amount=2&currency=usd",
                &["0.01 USD or 0.02 USD \u{2014} amount read 2 ways: amount=1, amount=2 (given 2 times)"],
            ),
        ];
        for (body, want) in cases {
            let r = review(
                "POST",
                "api.stripe.com",
                "/v1/charges",
                Some("stripe.charges.create"),
                body.as_bytes(),
            );
            let shown = money(&r).expect("money");
            for w in *want {
                assert!(shown.contains(w), "{body}: {w:?} in {shown}");
            }
        }
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
            Some("refund of 1 or 100000 (minor units of the currency of ch_1) \u{2014} amount read 2 ways: amount=1, amount=100000 (given 2 times)")
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

    /// Review: a refund's money line named the body's charge or payment intent over the path's
    /// (`POST /v1/charges/ch_BIG/refund` with `payment_intent=pi_small` read "full refund of
    /// pi_small"). The path names what is refunded; a body naming another is shown and warned
    /// of.
    #[test]
    fn a_refund_names_the_paths_charge_first() {
        let cases: &[(&str, &[u8], &str, bool)] = &[
            (
                "/v1/charges/ch_BIG/refund",
                b"payment_intent=pi_small",
                "full refund of ch_BIG (the path names ch_BIG, the body payment_intent=pi_small)",
                true,
            ),
            (
                "/v1/charges/ch_BIG/refunds",
                b"charge=ch_small&amount=100&currency=usd",
                "refund of 1.00 USD from ch_BIG (the path names ch_BIG, the body charge=ch_small)",
                true,
            ),
            (
                "/v1/charges/ch_BIG/refunds",
                b"charge=ch_BIG&amount=100&currency=usd",
                "refund of 1.00 USD from ch_BIG",
                false,
            ),
            (
                "/v1/application_fees/fee_1/refunds",
                b"",
                "full refund of fee_1",
                false,
            ),
        ];
        for (path, body, want, warned) in cases {
            let r = review("POST", "api.stripe.com", path, None, body);
            let a = arguments(&r, body);
            assert_eq!(a.money.as_deref(), Some(*want), "{path}");
            assert_eq!(
                a.ambiguous
                    .iter()
                    .any(|x| x.starts_with("what is refunded")),
                *warned,
                "{path}: {:?}",
                a.ambiguous
            );
        }
    }

    /// A key some framework reads as the displayed one (`[amount]`: Rack 2 and qs) shows every
    /// reading, never one as the amount (tests/bypass_corpus.rs holds these as param_ambiguous).
    /// Session 17 review: a destination charge showed no destination, and an amount after
    /// `& ` showed one reading only.
    #[test]
    fn where_the_money_goes_and_rack_blanks_are_shown() {
        let pi = review(
            "POST",
            "api.stripe.com",
            "/v1/payment_intents",
            Some("stripe.payment_intents.create.confirm"),
            b"amount=100&currency=usd&confirm=true&transfer_data[destination]=acct_evil",
        );
        let a = arguments(&pi, &pi.request.body().expect("body"));
        assert!(
            a.args
                .iter()
                .any(|x| x == "transfer_data[destination]=acct_evil"),
            "{:?}",
            a.args
        );
        let charge = review(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            None,
            b"amount=50&currency=usd&source=tok_visa& amount=5000000",
        );
        assert_eq!(
            money(&charge).as_deref(),
            Some("0.50 USD or 50000.00 USD \u{2014} amount read 2 ways: amount=50, amount=5000000 (Rack drops a blank after `&` and a trailing NUL)")
        );
    }

    #[test]
    fn bracket_spellings_show_every_reading() {
        let charge = review(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            None,
            b"amount=100&currency=usd&source=tok_visa&[amount]=5000000",
        );
        assert_eq!(
            money(&charge).as_deref(),
            Some("1.00 USD or 50000.00 USD \u{2014} amount read 2 ways: amount=100, [amount]=5000000 (Rack 2 and qs read [amount] as amount)")
        );
        let refund = review(
            "POST",
            "api.stripe.com",
            "/v1/refunds",
            None,
            b"charge=ch_small&[charge]=ch_big",
        );
        assert_eq!(
            money(&refund).as_deref(),
            Some("full refund of ch_small or ch_big \u{2014} charge read 2 ways: charge=ch_small, [charge]=ch_big (Rack 2 and qs read [charge] as charge)")
        );
        let plain = review(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            None,
            b"amount=25000&currency=usd&source=tok_visa",
        );
        assert_eq!(money(&plain).as_deref(), Some("250.00 USD"));
    }

    /// `;` (Rack 1, Go before 1.17), a JSON body that reads as a form, and a JSON key given twice
    /// each give an amount another reading.
    #[test]
    fn separators_json_and_duplicate_keys_show_every_reading() {
        let semi = review(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            None,
            b"currency=usd&amount=100;amount=5000000",
        );
        let m = money(&semi).expect("money");
        assert!(m.contains("1.00 USD or 50000.00 USD"), "{m}");
        assert!(m.contains("split at `;`"), "{m}");
        let json = review(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            None,
            br#"{"amount":100,"currency":"usd","description":"&amount=5000000&"}"#,
        );
        let m = money(&json).expect("money");
        assert!(m.starts_with("1.00 USD or 50000.00 USD"), "{m}");
        let twice = review(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            None,
            br#"{"amount":100,"currency":"usd","amount":5000000}"#,
        );
        let m = money(&twice).expect("money");
        assert!(m.starts_with("1.00 USD or 50000.00 USD"), "{m}");
        let r = review(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            None,
            b"amount=100&currency=usd&customer=cus_a&customer]=cus_b",
        );
        let shown = arguments(&r, &r.request.body().expect("body"));
        assert_eq!(shown.ambiguous, vec!["customer".to_string()]);
        assert!(
            shown
                .args
                .iter()
                .any(|a| a.starts_with("customer read 2 ways")),
            "{:?}",
            shown.args
        );
    }

    /// Security review: who gets access and where a webhook delivers reached no summary, so
    /// padding could push them out of view.
    #[test]
    fn access_fields_and_a_webhook_destination_are_shown() {
        let padded = format!(
            "{{\"note\":\"ok\",{}\"permission\":\"admin\"}}",
            "\n".repeat(3000)
        );
        let cases: &[(&str, &str, &[u8], &[&str])] = &[
            (
                "PUT",
                "/repos/acme/prod/collaborators/mallory1",
                padded.as_bytes(),
                &["permission=admin"],
            ),
            (
                "PUT",
                "/orgs/acme/memberships/mallory1",
                br#"{"role":"admin"}"#,
                &["role=admin"],
            ),
            (
                "PATCH",
                "/repos/acme/prod",
                br#"{"private":false,"archived":true}"#,
                &["private=false", "archived=true"],
            ),
            (
                "POST",
                "/repos/acme/prod/hooks",
                br#"{"config":{"url":"https://evil.example/h","content_type":"json"},"events":["push"]}"#,
                &["config.url=https://evil.example/h"],
            ),
            (
                "POST",
                "/repos/acme/prod/hooks",
                b"config[url]=https://evil.example/f",
                &["config[url]=https://evil.example/f"],
            ),
            // Review: a key spelled with a `\u` escape passed the raw-bytes check for
            // `config`, and the webhook's destination was not shown.
            (
                "POST",
                "/repos/acme/prod/hooks",
                br#"{"c\u006fnfig":{"url":"https://ci.acme-corp.com:aaaa@evil.example/collect"}}"#,
                &["config.url=https://ci.acme-corp.com:aaaa@evil.example/collect [host evil.example; 21 characters of user-info before it]"],
            ),
            // Review of session 19: a host-like user-info padded past the clip hid the host.
            (
                "POST",
                "/repos/acme/prod/hooks",
                br#"{"config":{"url":"https://ci.internal.example.com:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@evil.example/collect"}}"#,
                &["config.url=https://ci.internal.example.com:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@evil.example/collect [host evil.example; 94 characters of user-info before it]"],
            ),
            (
                "POST",
                "/repos/acme/prod/hooks",
                br#"{"config":{"url":"https://good.example\\@evil.example/x"}}"#,
                &["config.url=https://good.example\\@evil.example/x [host evil.example; 13 characters of user-info before it] [contains a backslash: host evil.example as the RFC reads it, good.example as browsers do]"],
            ),
        ];
        for (method, path, body, want) in cases {
            let r = review(method, "api.github.com", path, None, body);
            let args = arguments(&r, body).args;
            for w in *want {
                assert!(args.iter().any(|a| a == w), "{path}: {w} in {args:?}");
            }
        }
        // The stored request as the detail and link pages show it: the padding as a marker.
        let r = review("PUT", "api.github.com", "/r", None, padded.as_bytes());
        let views = super::super::views::hider(&r);
        let shown = super::super::views::stored_request_text(&r, "/r", padded.as_bytes(), &views);
        assert!(
            shown.ends_with("{\"note\":\"ok\",\n[… 3000 blank lines …]\n\"permission\":\"admin\"}"),
            "{shown}"
        );
    }

    /// Review: a look-alike host (`ci.аcme-corp.com`, a Cyrillic `а`) showed with no note; it
    /// resolves as its punycode form.
    #[test]
    fn a_host_that_is_not_ascii_shows_what_it_resolves_as() {
        let cases: &[(&str, &str)] = &[
            (
                "https://ci.\u{430}cme-corp.com/hook",
                "https://ci.\u{430}cme-corp.com/hook [host is not ASCII: resolves as ci.xn--cme-corp-06g.com]",
            ),
            (
                "https://user@ci.\u{430}cme-corp.com:8443/hook",
                "https://user@ci.\u{430}cme-corp.com:8443/hook [host ci.\u{430}cme-corp.com:8443; 4 characters of user-info before it] [host is not ASCII: resolves as ci.xn--cme-corp-06g.com]",
            ),
            (
                "https://ci.%D0%B0cme-corp.com/hook",
                "https://ci.%D0%B0cme-corp.com/hook [host is percent-encoded: resolves as ci.xn--cme-corp-06g.com]",
            ),
            (
                "https://\u{FF45}vil.example/x",
                "https://\u{FF45}vil.example/x [host is not ASCII: resolves as evil.example]",
            ),
            ("https://ci.acme-corp.com/hook", "https://ci.acme-corp.com/hook"),
            ("https://[::1]:8080/x", "https://[::1]:8080/x"),
        ];
        for (url, want) in cases {
            assert_eq!(show_url(url), *want, "{url}");
        }
        let r = review(
            "POST",
            "api.github.com",
            "/repos/acme/prod/hooks",
            None,
            "{\"config\":{\"url\":\"https://ci.\u{430}cme-corp.com/hook\"}}".as_bytes(),
        );
        let args = arguments(&r, &r.request.body().expect("body")).args;
        assert!(
            args.iter()
                .any(|a| a.ends_with("[host is not ASCII: resolves as ci.xn--cme-corp-06g.com]")),
            "{args:?}"
        );
    }

    /// Review: where data or money goes reached no summary: a webhook config's own `url` (and
    /// `insecure_ssl`), a Stripe webhook endpoint's form-encoded `url`, a repository transfer's
    /// `new_owner`, and the bracket keys of a notable key (`destination[account]` is not
    /// `destination`).
    #[test]
    fn where_data_and_money_go_is_shown() {
        /// (method, host, path, body, arguments shown)
        type Case<'a> = (&'a str, &'a str, &'a str, &'a [u8], &'a [&'a str]);
        let cases: &[Case] = &[
            (
                "PATCH",
                "api.github.com",
                "/repos/acme/prod/hooks/7/config",
                br#"{"url":"https://ci.acme-corp.com:aaaa@evil.example/x","insecure_ssl":"1"}"#,
                &[
                    "url=https://ci.acme-corp.com:aaaa@evil.example/x [host evil.example; 21 characters of user-info before it]",
                    "insecure_ssl=1",
                ],
            ),
            (
                "PATCH",
                "api.github.com",
                "/orgs/acme/hooks/7/config",
                br#"{"url":"https://evil.example/org"}"#,
                &["url=https://evil.example/org"],
            ),
            (
                "POST",
                "api.github.com",
                "/repos/acme/prod/hooks",
                br#"{"config":{"url":"https://evil.example/h","insecure_ssl":"1"}}"#,
                &["config.url=https://evil.example/h", "config.insecure_ssl=1"],
            ),
            (
                "POST",
                "api.stripe.com",
                "/v1/webhook_endpoints",
                b"url=https%3A%2F%2Fevil.example%2Fstripe&enabled_events[]=*",
                &["url=https://evil.example/stripe"],
            ),
            (
                "POST",
                "api.github.com",
                "/repos/acme/prod/transfer",
                br#"{"new_owner":"evil-org","new_name":"prod-copy"}"#,
                &["new_owner=evil-org", "new_name=prod-copy"],
            ),
            (
                "POST",
                "api.stripe.com",
                "/v1/charges",
                b"amount=10000&currency=usd&destination[account]=acct_evil&destination[amount]=9900&destination[other]=x",
                &[
                    "destination[account]=acct_evil",
                    "destination[amount]=9900",
                    "destination[other]=x",
                ],
            ),
            (
                "POST",
                "api.stripe.com",
                "/v1/payment_intents",
                b"amount=10000&currency=usd&transfer_data[destination]=acct_evil&transfer_data[amount]=9900&on_behalf_of=acct_evil&application_fee_amount=1",
                &[
                    "transfer_data[destination]=acct_evil",
                    "transfer_data[amount]=9900",
                    "on_behalf_of=acct_evil",
                    "application_fee_amount=1",
                ],
            ),
        ];
        for (method, host, path, body, want) in cases {
            let r = review(method, host, path, None, body);
            let args = arguments(&r, body).args;
            for w in *want {
                assert!(args.iter().any(|a| a == w), "{path}: {w} in {args:?}");
            }
        }
        // Thousands of sub-keys show a bounded few.
        let body: String = (0..100)
            .map(|i| format!("destination[k{i:03}]=v&"))
            .collect();
        let r = review(
            "POST",
            "api.stripe.com",
            "/v1/charges",
            None,
            body.as_bytes(),
        );
        let args = arguments(&r, body.as_bytes()).args;
        assert_eq!(args.len(), SUB_KEYS_SHOWN + 1, "{args:?}");
        assert!(
            args.last()
                .is_some_and(|a| a == "and 92 more destination[…] keys (see the body)"),
            "{args:?}"
        );
    }

    /// Security review: an amount with no currency, or one that is not a number, showed no
    /// amount at all; an invoice item's quantity was not shown.
    #[test]
    fn an_amount_is_always_shown() {
        let cases: &[(&str, &[u8], &str)] = &[
            (
                "/v1/payment_intents/pi_123/increment_authorization",
                b"amount=99999999",
                "99999999 minor units, currency not given",
            ),
            (
                "/v1/charges",
                b"amount=5_000_000&currency=usd",
                "not a number: \"5_000_000\"",
            ),
            (
                "/v1/charges",
                b"amount=5_000_000",
                "not a number: \"5_000_000\", currency not given",
            ),
            (
                "/v1/invoiceitems",
                b"customer=cus_1&unit_amount=2500&currency=usd&quantity=400",
                "25.00 USD × quantity 400",
            ),
            (
                "/v1/invoiceitems",
                b"customer=cus_1&amount=2500&currency=usd",
                "25.00 USD",
            ),
        ];
        for (path, body, want) in cases {
            let r = review("POST", "api.stripe.com", path, None, body);
            assert_eq!(money(&r).as_deref(), Some(*want), "{path}");
        }
    }

    /// Security review: `Stripe-Account` and `Stripe-Context` (which account a call acts on)
    /// reached no summary unless a rule extracted them: a refund read "full refund of ch_x".
    #[test]
    fn the_account_a_stripe_call_acts_on_is_always_shown() {
        /// (headers, the accounts shown, the headers named as given twice)
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);
        let cases: &[Case] = &[
            (&[], &[], &[]),
            (
                &[("stripe-account", "acct_other")],
                &["on account acct_other (Stripe-Account)"],
                &[],
            ),
            (
                &[
                    ("Stripe-Account", "acct_a"),
                    ("stripe-account", "acct_b"),
                    ("stripe-context", "ctx_1/acct_c"),
                ],
                &[
                    "on account acct_a (Stripe-Account)",
                    "on account acct_b (Stripe-Account)",
                    "on account ctx_1/acct_c (Stripe-Context)",
                ],
                &["header `Stripe-Account` (given 2 times)"],
            ),
        ];
        for (headers, want, twice) in cases {
            let mut r = review(
                "POST",
                "api.stripe.com",
                "/v1/refunds",
                Some("stripe.refunds.create"),
                b"charge=ch_x",
            );
            for (k, v) in *headers {
                r.request.headers.push(((*k).into(), (*v).into()));
            }
            let s = super::super::views::sum_up(&r, b"charge=ch_x");
            assert_eq!(s.money.as_deref(), Some("full refund of ch_x"));
            let accounts: Vec<&str> = s
                .args
                .iter()
                .map(String::as_str)
                .filter(|a| a.starts_with("on account"))
                .collect();
            assert_eq!(&accounts, want, "{headers:?}");
            assert_eq!(&s.ambiguous, twice, "{headers:?}");
        }
    }

    /// Security review: only the first key given twice was named (`a`, not `permission`),
    /// and names were shown raw (a bidi override reordered the warning).
    #[test]
    fn every_key_given_twice_is_named_and_shown_escaped() {
        let cases: &[(&[u8], &[&str])] = &[
            (
                br#"{"a":1,"a":1,"note":"pull","note":"admin"}"#,
                &[
                    "JSON key `note` (given twice, values differ)",
                    "JSON key `a` (given twice)",
                ],
            ),
            (
                "{\"x\u{202E}\":1,\"x\u{202E}\":2}".as_bytes(),
                &["JSON key `x\\u{202E}` (given twice, values differ)"],
            ),
        ];
        for (body, want) in cases {
            let r = review(
                "PUT",
                "api.github.com",
                "/repos/o/r/collaborators/eve",
                Some("github.repos.add-collaborator"),
                body,
            );
            let shown = super::super::views::sum_up(&r, body).ambiguous;
            assert_eq!(&shown, want, "{}", String::from_utf8_lossy(body));
        }
        // Decoys first in a form body: the one whose values differ is still named, first.
        let mut body: String = (0..12).map(|i| format!("d{i}=1&d{i}=1&")).collect();
        body.push_str("scope=read&scope=admin");
        let r = review(
            "POST",
            "api.stripe.com",
            "/v1/customers",
            None,
            body.as_bytes(),
        );
        let shown = arguments(&r, body.as_bytes()).ambiguous;
        assert_eq!(
            shown.first().map(String::as_str),
            Some("body field `scope` (given twice, values differ)"),
            "{shown:?}"
        );
        assert!(
            shown
                .last()
                .is_some_and(|l| l.starts_with("1 more keys given twice")),
            "{shown:?}"
        );
    }
}
