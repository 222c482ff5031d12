//! The shared HTTP vocabulary, at the bottom of the layers: the body type both sides of the
//! proxy use, refusals and JSON answers, hop-by-hop headers, and destinations (`host:port`).

mod hop;
pub mod respond;
pub mod target;

pub use hop::{
    connection_names_end_to_end, is_forwarded_request_header, strip_hop_by_hop, strip_underscored,
    unusual_transfer_encoding, HOP_BY_HOP,
};
pub use respond::{empty, full, json_response, Refusal, Side, REASON_HEADER};
pub use target::{Target, TargetError};

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body type used on both sides of the proxy, by the gate and by the admin listener.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// `a: b: c` for an error and its sources, each text once (drivers often repeat a cause's text
/// in its wrapper).
pub fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        let s = e.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = e.source();
    }
    out
}
