//! The gate: holds escalated requests as reviews, runs their lifecycle, executes approved ones.
//! (being written)

use bytes::Bytes;
use http::HeaderMap;

use crate::proxy::respond::Refusal;
use crate::proxy::target::Target;
use crate::proxy::upstream::Body;
use crate::rules::Verdict;

pub const OUTCOME_HEADER: &str = "airlock-outcome";
pub const REVIEW_ID_HEADER: &str = "airlock-review-id";

/// A request the catalog escalated, fully buffered.
#[derive(Debug, Clone)]
pub struct HeldRequest {
    pub scheme: String,
    pub target: Target,
    pub method: String,
    pub path_and_query: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

pub struct Gate;

impl Gate {
    pub async fn hold(&self, _req: HeldRequest, _verdict: Verdict) -> http::Response<Body> {
        Refusal::internal("gate_unavailable", "not implemented").into_response()
    }
}

/// A random identifier with a readable prefix, e.g. `rev_3f9c...` (128 bits).
pub fn new_id(prefix: &str) -> String {
    let bytes: [u8; 16] = rand::random();
    format!("{prefix}_{}", hex::encode(bytes))
}
