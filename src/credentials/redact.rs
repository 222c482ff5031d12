//! What of a request counts as a secret once Airlock holds it: credential-like header names
//! (a built-in list, name patterns, and every service's configured `strip` list) and
//! secret-named query parameters. The gate drops such headers before a held request is stored
//! and redacts them in an upstream's answer before an execution is stored; the admin API and the
//! dashboard mask such query values (and rule parameters so named) wherever they show a request,
//! a one-click link's page masks secret-named body fields too, and notifications carry no query
//! at all (see the README, "Reviews").

use super::Vault;

/// What is shown instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// Header names (lowercase) that carry credentials.
const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "private-token",
    "x-auth-token",
    "x-access-token",
    "authentication",
    "x-api-key",
    "api-key",
    "x-github-token",
    "x-amz-security-token",
];

/// A name containing one of these (lowercase) is treated as a credential, header or query.
const SECRET_NAME_PARTS: &[&str] = &[
    "token",
    "secret",
    "password",
    "api-key",
    "api_key",
    "apikey",
    "signature",
    "credential",
];

/// Query parameter names (lowercase) that carry secrets, besides [`SECRET_NAME_PARTS`].
const SECRET_QUERY_PARAMS: &[&str] = &[
    "access_token",
    "token",
    "key",
    "api_key",
    "secret",
    "password",
    "signature",
    "sig",
    "client_secret",
];

/// Echoes of query values shorter than this are not masked in shown text (too likely to match
/// ordinary text); the parameter itself is masked in the URL whatever its length.
pub(super) const MIN_ECHO_LEN: usize = 6;

/// Lengths (in characters) at which shown text clips a value (`arguments::clip`): a secret
/// longer than one shows clipped, `prefix…`, which masking must catch too.
const CLIPPED_AT: [usize; 3] = [12, 40, 80];

/// `values` with each one's clipped renderings (`prefix…`) added, longest first, so masking
/// catches a value wherever shown text clipped it before masking.
pub fn with_clipped_forms(values: &[String]) -> Vec<String> {
    let mut out: Vec<String> = values.to_vec();
    for v in values {
        for n in CLIPPED_AT {
            if v.chars().nth(n).is_some() {
                let mut clipped: String = v.chars().take(n).collect();
                clipped.push('…');
                if !out.contains(&clipped) {
                    out.push(clipped);
                }
            }
        }
    }
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out
}

/// Is `name` a credential-like header (built-in list or name pattern; case-insensitive)?
/// Configured `strip` lists are checked by [`Vault::strips`].
pub fn is_credential_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    CREDENTIAL_HEADERS.contains(&n.as_str()) || SECRET_NAME_PARTS.iter().any(|p| n.contains(p))
}

/// Is `name` (already percent-decoded) a secret-named query parameter (case-insensitive)?
pub fn is_secret_query_param(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    SECRET_QUERY_PARAMS.contains(&n.as_str()) || SECRET_NAME_PARTS.iter().any(|p| n.contains(p))
}

/// `path_and_query` with the value of every secret-named query parameter replaced by
/// [`REDACTED`]; everything else is kept byte for byte. For display only: the stored request
/// keeps the real value, because it is what executes.
pub fn mask_query(path_and_query: &str) -> String {
    let Some((path, query)) = path_and_query.split_once('?') else {
        return path_and_query.to_string();
    };
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) if !value.is_empty() && is_secret_query_param(&decode(name)) => {
                format!("{name}={REDACTED}")
            }
            _ => pair.to_string(),
        })
        .collect();
    format!("{path}?{}", pairs.join("&"))
}

/// A rule-extracted parameter as shown: the value of a secret-named one (a condition on a query
/// or body field such as `token`) is [`REDACTED`].
pub fn shown_param<'a>(name: &str, value: &'a str) -> &'a str {
    if !value.is_empty() && is_secret_query_param(name) {
        REDACTED
    } else {
        value
    }
}

/// The values of the secret-named query parameters in `path_and_query` (raw and decoded), long
/// enough to be masked where an upstream answer echoes them ([`mask_values`]).
pub fn secret_query_values(path_and_query: &str) -> Vec<String> {
    let Some((_, query)) = path_and_query.split_once('?') else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for pair in query.split('&') {
        let Some((name, value)) = pair.split_once('=') else {
            continue;
        };
        if !is_secret_query_param(&decode(name)) || decode(value) == REDACTED {
            continue;
        }
        for v in [value.to_string(), decode(value)] {
            if v.len() >= MIN_ECHO_LEN && !out.contains(&v) {
                out.push(v);
            }
        }
    }
    // Longest first, so a value containing another is masked whole.
    out.sort_by_key(|v| std::cmp::Reverse(v.len()));
    out
}

/// The values of secret-named fields in a request body (JSON at any depth, or a form), as
/// [`secret_query_values`] gives a query's: a webhook's `config.secret`, a `password`. A leaf
/// counts when its own key (the nearest object key, or a form key's last bracketed part) is
/// secret-named, or when it lies under a key that holds secrets ([`holds_secrets`]: a
/// `credentials` object, not `secret_scanning`); each value comes as read and as written
/// (percent-encoded, JSON-escaped as [`json_spellings`] lists), so
/// the body text shown masks either. Longest first. For pages a link's bearer sees, where they
/// are masked (or, past [`MOST_BODY_SECRETS`], the body is not shown).
pub fn secret_body_values(body: &[u8]) -> Vec<String> {
    /// `secret`: a leaf here is a secret; `within`: everything below is (an object or list
    /// under a key that names secrets, `{"password": {"new": …}}`).
    fn walk(v: &serde_json::Value, secret: bool, within: bool, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, item) in m {
                    let own = within || is_secret_body_field(k);
                    walk(item, own, within || holds_secrets(k), out);
                }
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(item, secret, within, out);
                }
            }
            serde_json::Value::String(s) if secret && !is_public_key(s) => {
                out.push(s.clone());
                out.extend(json_spellings(s));
            }
            serde_json::Value::Number(n) if secret => out.push(n.to_string()),
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(body) {
        walk(&v, false, false, &mut out);
    } else if let Ok(text) = std::str::from_utf8(body) {
        for pair in text.split('&') {
            let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(raw_key);
            // `config[secret]`: the last bracketed part names the field; `credentials[new]`
            // lies under a key that holds secrets.
            let parts: Vec<&str> = key.split(['[', ']']).filter(|p| !p.is_empty()).collect();
            let Some((own, outer)) = parts.split_last() else {
                continue;
            };
            if (is_secret_body_field(own) || outer.iter().any(|p| holds_secrets(p)))
                && !is_public_key(&decode(raw_value))
            {
                out.push(decode(raw_value));
                out.push(raw_value.to_string());
            }
        }
    }
    out.retain(|v| v.len() >= MIN_ECHO_LEN);
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// The secret values of an answer's body, as [`secret_body_values`] finds them in a whole
/// body; in JSON that does not parse whole (an answer cut at the cap), lexically: each string
/// or number after a secret-named key (`"token": "ghs_…"`), as written, a value the cut
/// shortened included. Values under a key that holds secrets are found only in a whole body.
pub fn secret_answer_values(body: &[u8]) -> Vec<String> {
    let json_like = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| matches!(b, b'{' | b'['));
    if !json_like || serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok() {
        return secret_body_values(body);
    }
    let text = String::from_utf8_lossy(body);
    let mut out = Vec::new();
    let mut rest = text.as_ref();
    while let Some(open) = rest.find('"') {
        let (key, after) = json_string(&rest[open + 1..]);
        rest = after;
        let Some(value) = rest.trim_start().strip_prefix(':') else {
            continue;
        };
        let value = value.trim_start();
        let secret = is_secret_body_field(&decode_json_text(key));
        if let Some(quoted) = value.strip_prefix('"') {
            let (v, after) = json_string(quoted);
            if secret && !is_public_key(&decode_json_text(v)) {
                out.push(v.to_string());
            }
            rest = after;
        } else {
            let end = value
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '+' | '.')))
                .unwrap_or(value.len());
            if secret && end > 0 {
                out.push(value[..end].to_string());
            }
            rest = &value[end..];
        }
    }
    out.retain(|v| v.len() >= MIN_ECHO_LEN);
    out.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    out.dedup();
    out
}

/// The contents of the JSON string whose opening quote came just before `text`, as written,
/// and the text after its closing quote (empty when the text ends first).
fn json_string(text: &str) -> (&str, &str) {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return (&text[..i], &text[i + 1..]),
            _ => {}
        }
    }
    (text, "")
}

/// A JSON string's contents as written, unescaped where it parses.
fn decode_json_text(raw: &str) -> String {
    serde_json::from_str::<String>(&format!("\"{raw}\"")).unwrap_or_else(|_| raw.to_string())
}

/// Is `value` a public key (an OpenSSH `authorized_keys` line, a PGP public key block), as
/// GitHub's deploy keys, SSH and GPG keys take in a field named `key`? It is no secret, and
/// it is what a reviewer must see to know what access she grants.
pub(super) fn is_public_key(value: &str) -> bool {
    const OPENSSH: &[&str] = &[
        "ssh-rsa ",
        "ssh-dss ",
        "ssh-ed25519 ",
        "ecdsa-sha2-nistp256 ",
        "ecdsa-sha2-nistp384 ",
        "ecdsa-sha2-nistp521 ",
        "sk-ssh-ed25519@openssh.com ",
        "sk-ecdsa-sha2-nistp256@openssh.com ",
    ];
    let v = value.trim();
    OPENSSH.iter().any(|p| v.starts_with(p))
        || v.starts_with("-----BEGIN PGP PUBLIC KEY BLOCK-----")
}

/// Body field names (lowercase) that carry secrets besides the secret-named ones: an app
/// secret's `payload`, keys and passphrases, a card's security code, and a just-in-time runner
/// configuration (GitHub's `generate-jitconfig` answer carries the runner's registration
/// credential in `encoded_jit_config`).
const SECRET_BODY_FIELDS: &[&str] = &[
    "payload",
    "private_key",
    "passphrase",
    "cvc",
    "cvv",
    "encoded_jit_config",
    "jit_config",
];

/// Is body field `name` a secret: secret-named, or in [`SECRET_BODY_FIELDS`]?
pub(super) fn is_secret_body_field(name: &str) -> bool {
    is_secret_query_param(name) || SECRET_BODY_FIELDS.contains(&name.to_ascii_lowercase().as_str())
}

/// Does key `name` hold secrets all through (not just name one, as `secret_scanning` does)?
/// Its last word is secret-named (`password`, `credentials`, `client_secrets`), or it is a
/// payment card (`card[number]`).
pub(super) fn holds_secrets(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    let n = n.strip_suffix('s').unwrap_or(&n);
    n == "card"
        || SECRET_QUERY_PARAMS.contains(&n)
        || SECRET_NAME_PARTS.iter().any(|p| n.ends_with(p))
}

/// How one JSON writer escapes a string: non-ASCII as `\uXXXX` (in upper-case hex?), these
/// characters as `\u00XX` too, `/` as `\/`.
struct Writer {
    ascii_only: bool,
    upper: bool,
    escaped: &'static [char],
    slash: bool,
}

/// The writers whose spellings are looked for: serde, JavaScript, Ruby and Jackson; PHP with
/// `JSON_UNESCAPED_UNICODE` (`\/` only); Python's `ensure_ascii`; PHP's default (`\/` too); Go's HTML-safe `\u003c`; Gson's (`=` and `'`
/// too); .NET's System.Text.Json (upper-case hex, `+`, `"` and more).
const WRITERS: [Writer; 7] = [
    Writer {
        ascii_only: false,
        upper: false,
        escaped: &[],
        slash: false,
    },
    Writer {
        ascii_only: false,
        upper: false,
        escaped: &[],
        slash: true,
    },
    Writer {
        ascii_only: true,
        upper: false,
        escaped: &[],
        slash: false,
    },
    Writer {
        ascii_only: true,
        upper: false,
        escaped: &[],
        slash: true,
    },
    Writer {
        ascii_only: false,
        upper: false,
        escaped: &['<', '>', '&', '\u{2028}', '\u{2029}'],
        slash: false,
    },
    Writer {
        ascii_only: false,
        upper: false,
        escaped: &['<', '>', '&', '=', '\''],
        slash: false,
    },
    Writer {
        ascii_only: true,
        upper: true,
        escaped: &['<', '>', '&', '\'', '"', '+', '`'],
        slash: false,
    },
];

/// String `s` as JSON writers spell it inside quotes (see [`WRITERS`]).
fn json_spellings(s: &str) -> Vec<String> {
    let hex = |out: &mut String, u: u32, upper: bool| {
        if upper {
            out.push_str(&format!("\\u{u:04X}"));
        } else {
            out.push_str(&format!("\\u{u:04x}"));
        }
    };
    WRITERS
        .iter()
        .map(|w| {
            let mut out = String::with_capacity(s.len() + 8);
            for c in s.chars() {
                match c {
                    c if w.escaped.contains(&c) => hex(&mut out, u32::from(c), w.upper),
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '/' if w.slash => out.push_str("\\/"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    c if u32::from(c) < 0x20 => hex(&mut out, u32::from(c), w.upper),
                    c if !c.is_ascii() && w.ascii_only => {
                        let mut units = [0u16; 2];
                        for u in c.encode_utf16(&mut units) {
                            hex(&mut out, u32::from(*u), w.upper);
                        }
                    }
                    c => out.push(c),
                }
            }
            out
        })
        .collect()
}

/// How many secret body values a page masks (each is searched in the shown text); a body with
/// more is not shown on a link's page at all.
pub const MOST_BODY_SECRETS: usize = 32;

/// `text` with every occurrence of each of `values` replaced by [`REDACTED`].
pub fn mask_values(text: &str, values: &[String]) -> String {
    let mut out = text.to_string();
    for v in values {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), REDACTED);
        }
    }
    out
}

/// `body` with every occurrence of each of `values` replaced by [`REDACTED`], byte-wise (an
/// answer cut at the cap may end inside a character), and how many were replaced.
pub fn mask_bytes(body: &[u8], values: &[String]) -> (Vec<u8>, usize) {
    let mut out = body.to_vec();
    let mut replaced = 0;
    for v in values {
        let finder = memchr::memmem::Finder::new(v.as_bytes());
        if finder.find(&out).is_none() {
            continue;
        }
        let mut next = Vec::with_capacity(out.len());
        let mut from = 0;
        for at in finder.find_iter(&out) {
            if at < from {
                continue;
            }
            next.extend_from_slice(&out[from..at]);
            next.extend_from_slice(REDACTED.as_bytes());
            from = at + v.len();
            replaced += 1;
        }
        next.extend_from_slice(&out[from..]);
        out = next;
    }
    (out, replaced)
}

pub(super) fn decode(s: &str) -> String {
    form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl Vault {
    /// Does any configured service list `name` in its `strip` list (case-insensitive)?
    pub fn strips(&self, name: &str) -> bool {
        self.strip_lists()
            .any(|h| h.as_str().eq_ignore_ascii_case(name))
    }

    /// Is `name` a header Airlock never stores or shows: credential-like by
    /// [`is_credential_header`], or in a configured `strip` list?
    pub fn is_secret_header(&self, name: &str) -> bool {
        is_credential_header(name) || self.strips(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_body_fields_at_any_depth_json_or_form() {
        let json =
            br#"{"name":"web","config":{"url":"https://hook.example","secret":"s3cr3t-v\u00e4lue"},
            "events":["push"],"password":"hunter22","client_secret":["arrayvalue"],
            "secret_scanning":{"status":"disabled"},"credentials":{"new":"n3wpass","old":["0ldpass"]},
            "token":"a/b<c>\u00e4"}"#;
        assert_eq!(
            secret_body_values(json),
            vec![
                "a/b\\u003Cc\\u003E\\u00E4",
                "a/b\\u003cc\\u003eä",
                "s3cr3t-v\\u00E4lue",
                "s3cr3t-v\\u00e4lue",
                "a\\/b<c>\\u00e4",
                "s3cr3t-välue",
                "a/b<c>\\u00e4",
                "arrayvalue",
                "a\\/b<c>ä",
                "a/b<c>ä",
                "hunter22",
                "0ldpass",
                "n3wpass",
            ],
            "as read and as written (serde, PHP, Python, Go, .NET); leaves whose own key is \
             secret-named, and all under a key that holds secrets (`credentials`, not \
             `secret_scanning`)"
        );
        // Named otherwise: an app secret's payload, a card's number; in a form too.
        let form =
            b"name=k&payload=sk_live_abcdef&card[number]=4242424242424242&credentials[new]=n3wpass";
        assert_eq!(
            secret_body_values(form),
            vec!["4242424242424242", "sk_live_abcdef", "n3wpass"]
        );
        let form = b"charge=ch_1&metadata[api_secret]=whsec%2Fab%2Bc%3D%3D&card[password]=pw";
        assert_eq!(
            secret_body_values(form),
            vec!["whsec%2Fab%2Bc%3D%3D", "whsec/ab+c=="],
            "raw and decoded; values under 6 bytes are not masked"
        );
        let many: String = (0..100)
            .map(|i| format!("x{i}[token]=value{i:04}&"))
            .collect();
        assert_eq!(secret_body_values(many.as_bytes()).len(), 100);
        assert!(secret_body_values(b"\xff\xfe").is_empty());
    }

    /// Review of session 19: a deploy key's or SSH key's `key` field, a public key, was masked
    /// on a link's page, so a reviewer approving standing access saw only the title the agent
    /// chose. Public keys are shown; a private key or another `key` value is still masked.
    #[test]
    fn public_keys_are_not_masked() {
        let json = br#"{"title":"ci","key":"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ0 mallory@evil","read_only":false}"#;
        assert!(secret_body_values(json).is_empty());
        let form = b"title=ci&key=ssh-rsa+AAAAB3NzaC1yc2E+me%40host";
        assert!(secret_body_values(form).is_empty());
        let gpg = br#"{"armored_public_key":"-----BEGIN PGP PUBLIC KEY BLOCK-----\nmQ==\n-----END PGP PUBLIC KEY BLOCK-----"}"#;
        assert!(secret_body_values(gpg).is_empty());
        let json =
            br#"{"key":"sk_live_0123456789","private_key":"-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaA=="}"#;
        let masked = secret_body_values(json);
        assert!(
            masked.iter().any(|v| v == "sk_live_0123456789")
                && masked
                    .iter()
                    .any(|v| v.starts_with("-----BEGIN OPENSSH PRIVATE KEY")),
            "{masked:?}"
        );
    }

    #[test]
    fn credential_headers_by_list_and_pattern() {
        for h in [
            "Authorization",
            "Proxy-Authorization",
            "Cookie",
            "Set-Cookie",
            "Private-Token",
            "X-Auth-Token",
            "X-Access-Token",
            "Authentication",
            "X-Api-Key",
            "Api-Key",
            "X-GitHub-Token",
            "X-Amz-Security-Token",
            "X-Refresh-TOKEN",
            "X-Client-Secret",
            "X-Password",
            "X-Partner-Apikey",
            "X-Signature",
            "X-Credential-Id",
        ] {
            assert!(is_credential_header(h), "{h}");
        }
        for h in [
            "accept",
            "content-type",
            "idempotency-key",
            "user-agent",
            "x-request-id",
        ] {
            assert!(!is_credential_header(h), "{h}");
        }
    }

    #[test]
    fn secret_query_values_are_masked_for_display() {
        let pq = "/r?a=1&access_token=tok123456&KEY=k&Client%5Fsecret=s%2Bcret99&sig=&page=2&X-Amz-Signature=abcdef";
        assert_eq!(
            mask_query(pq),
            "/r?a=1&access_token=[redacted]&KEY=[redacted]&Client%5Fsecret=[redacted]&sig=&page=2&X-Amz-Signature=[redacted]"
        );
        assert_eq!(mask_query("/plain"), "/plain");
        assert_eq!(mask_query("/q?x=1"), "/q?x=1");
        let values = secret_query_values(pq);
        assert!(values.contains(&"tok123456".to_string()), "{values:?}");
        assert!(values.contains(&"s%2Bcret99".to_string()), "{values:?}");
        assert!(values.contains(&"s+cret99".to_string()), "{values:?}");
        assert!(
            !values.contains(&"k".to_string()),
            "too short to mask echoes"
        );
        assert_eq!(
            mask_values("path /r?access_token=tok123456 echoed", &values),
            "path /r?access_token=[redacted] echoed"
        );
        assert_eq!(shown_param("access_token", "abc"), REDACTED);
        assert_eq!(shown_param("owner", "octo"), "octo");
    }

    /// An approved call's answer, whole or cut at the cap: the values of its secret-named
    /// fields are found (a cut value as far as it goes) and masked byte-wise, public keys
    /// and short values left.
    #[test]
    fn secret_answer_values_whole_or_cut() {
        let whole = br#"{"token":"ghs_Minted0123456789","expires_at":"2026-12-06T00:00:00Z"}"#;
        assert_eq!(secret_answer_values(whole), vec!["ghs_Minted0123456789"]);
        let (masked, n) = mask_bytes(whole, &secret_answer_values(whole));
        assert_eq!(
            masked,
            br#"{"token":"[redacted]","expires_at":"2026-12-06T00:00:00Z"}"#
        );
        assert_eq!(n, 1);
        // Review of session 23: a just-in-time runner's configuration carries its
        // registration credential under a name that said nothing.
        let jit = br#"{"runner":{"id":23},"encoded_jit_config":"eyJSdW5uZXIiOnsiQWdlbnQ="}"#;
        let (masked, _) = mask_bytes(jit, &secret_answer_values(jit));
        assert_eq!(
            masked,
            br#"{"runner":{"id":23},"encoded_jit_config":"[redacted]"}"#
        );
        // Cut at the cap: no parse; found lexically, the escaped quote kept inside, the cut
        // value as far as it goes, numbers too.
        let cut =
            "[{\"name\":\"a \\\"token\\\": x\",\"client_secret\":\"pi_1_secret_\\\"abc\\\"def\",\
                   \"cvc\": 123456,\"key\":\"ssh-ed25519 AAAAC3Nz\",\"password\":\"abc\"},\
                   {\"webhook\":{\"secret\":\"whsec_cut0123"
                .as_bytes()
                .to_vec();
        let mut cut = cut;
        cut.extend_from_slice(&[0xE2, 0x82]); // a character cut in two
        assert_eq!(
            secret_answer_values(&cut),
            vec![
                "pi_1_secret_\\\"abc\\\"def".to_string(),
                "whsec_cut0123\u{FFFD}".to_string(),
                "123456".to_string(),
            ]
        );
        let masked =
            String::from_utf8_lossy(&mask_bytes(&cut, &secret_answer_values(&cut)).0).into_owned();
        assert!(!masked.contains("pi_1_secret"), "{masked}");
        assert!(!masked.contains("123456"), "{masked}");
        assert!(masked.contains("ssh-ed25519 AAAAC3Nz"), "{masked}");
        assert!(masked.contains("a \\\"token\\\": x"), "{masked}");
        // Not JSON: a form answer (an OAuth token exchange).
        let form = b"access_token=gho_Form0123456789&scope=repo";
        assert_eq!(secret_answer_values(form), vec!["gho_Form0123456789"]);
    }
}
