//! Hop-by-hop headers (RFC 9110 7.6.1) and proxy credentials: stripped from every message
//! Airlock forwards, in either direction, and never stored with a held request; and header
//! names spelled with `_`, never sent upstream (servers disagree on what they name).

use http::header::{self, HeaderMap, HeaderName};

/// Hop-by-hop headers (RFC 9110 7.6.1) plus proxy credentials: never forwarded either way.
pub const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// [`HOP_BY_HOP`] as header names, so stripping does not parse names per request.
static HOP_BY_HOP_NAMES: [HeaderName; 9] = [
    header::CONNECTION,
    HeaderName::from_static("proxy-connection"),
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// The header names every `Connection` header lists.
fn connection_listed(headers: &HeaderMap) -> impl Iterator<Item = HeaderName> + '_ {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
}

/// A header the request carries that its `Connection` header names, other than the hop-by-hop
/// ones: stripping it before forwarding would send the upstream another request than the one
/// judged (`Connection: content-type` turns a JSON POST into a form one for Rack).
pub fn connection_names_end_to_end(headers: &HeaderMap) -> Option<String> {
    connection_listed(headers)
        // HTTP2-Settings goes with an h2c upgrade offer (curl --http2 on http://): per
        // connection, read by nobody upstream.
        .find(|n| !HOP_BY_HOP_NAMES.contains(n) && n != "http2-settings" && headers.contains_key(n))
        .map(|n| n.to_string())
}

/// A Transfer-Encoding other than one plain `chunked` (case aside), as the agent sent it: a
/// coding besides chunking (`gzip, chunked`: hyper takes off the chunking only, and the body
/// judged is still encoded), or the header given twice. nginx and Go's net/http refuse both;
/// an upstream behind another front end could frame or decode it otherwise.
pub fn unusual_transfer_encoding(headers: &HeaderMap) -> Option<String> {
    let values: Vec<_> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    let plain = |v: &&http::HeaderValue| {
        v.to_str()
            .is_ok_and(|t| t.trim().eq_ignore_ascii_case("chunked"))
    };
    match values.as_slice() {
        [] => None,
        [one] if plain(one) => None,
        _ => Some(
            values
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect::<Vec<_>>()
                .join(" | "),
        ),
    }
}

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the (few) names present: most messages carry none of these.
    if !headers.keys().any(|n| HOP_BY_HOP_NAMES.contains(n)) {
        return;
    }
    if headers.contains_key(header::CONNECTION) {
        let listed: Vec<HeaderName> = connection_listed(headers).collect();
        for name in listed {
            headers.remove(name);
        }
    }
    for name in &HOP_BY_HOP_NAMES {
        headers.remove(name);
    }
}

/// Is `name` spelled with `_`? Unicorn and other CGI-style servers fold `-` and `_` alike
/// (`Content_Type` is their `CONTENT_TYPE`, joined with a `Content-Type` by a comma), so an
/// upstream could read a header Airlock judged, or one that frames the message, under a name
/// Airlock did not read. No provider client sends one.
fn is_underscored(name: &HeaderName) -> bool {
    name.as_str().contains('_')
}

/// Drops every header spelled with `_` ([`is_underscored`]) from a request going upstream:
/// the upstream gets only names every server reads alike.
pub fn strip_underscored(headers: &mut HeaderMap) {
    if !headers.keys().any(is_underscored) {
        return;
    }
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| is_underscored(n))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Whether a held request's header `name` is stored (and so replayed): not when hop-by-hop or
/// spelled with `_` (see [`strip_underscored`]).
pub fn is_forwarded_request_header(name: &str) -> bool {
    !HOP_BY_HOP.contains(&name) && !name.contains('_')
}
