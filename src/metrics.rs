//! Process-wide Prometheus metrics (`prometheus-client`), served as OpenMetrics text on the admin
//! listener's `/metrics`. Recording is a few atomics (a label set's counter is found under a
//! read lock, or for requests in the thread's own table of handles). Labels are bounded:
//! verdicts, and the catalog's own service and tool names (never a path, host, agent or id),
//! failure kinds.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::LazyLock;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The content type of [`encode`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verdict: &'static str,
    service: String,
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    decision: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// A notification channel (its configured name: bounded by the config) and what happened.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NotifyLabels {
    channel: String,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabels {
    change: &'static str,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DutyLabels {
    duty: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreErrorLabels {
    op: &'static str,
    kind: &'static str,
}

/// Seconds from hold to decision: 1 s to about 2 days.
fn decision_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 3.0, 12))
}

struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    reviews_pending: Gauge,
    claims_paused: Gauge,
    ca_expiry: Gauge,
    decisions: Family<DecisionLabels, Histogram, fn() -> Histogram>,
    upstream_errors: Family<KindLabels, Counter>,
    tls_handshakes: Family<ResultLabels, Counter>,
    leaf_mints: Counter,
    wait_reads: Counter,
    audit_append: Histogram,
    store_errors: Family<StoreErrorLabels, Counter>,
    chunk_failures: Family<DutyLabels, Counter>,
    proxy_auth_failures: Family<ReasonLabels, Counter>,
    executions: Family<StateLabels, Counter>,
    notifications: Family<NotifyLabels, Counter>,
    policy_changes: Family<PolicyLabels, Counter>,
}

static METRICS: LazyLock<Metrics> = LazyLock::new(|| {
    let mut registry = Registry::with_prefix("airlock");
    let m = Metrics {
        requests: Family::default(),
        reviews_pending: Gauge::default(),
        claims_paused: Gauge::default(),
        ca_expiry: Gauge::default(),
        decisions: Family::new_with_constructor(decision_histogram as fn() -> Histogram),
        upstream_errors: Family::default(),
        tls_handshakes: Family::default(),
        leaf_mints: Counter::default(),
        wait_reads: Counter::default(),
        // 0.5 ms to about 4 s.
        audit_append: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
        store_errors: Family::default(),
        chunk_failures: Family::default(),
        proxy_auth_failures: Family::default(),
        executions: Family::default(),
        notifications: Family::default(),
        policy_changes: Family::default(),
        registry: Registry::default(),
    };
    registry.register(
        "requests",
        "Requests through the proxy by verdict, and the catalog's service and tool",
        m.requests.clone(),
    );
    registry.register(
        "reviews_pending",
        "Held requests awaiting a decision (read from the store at each scrape)",
        m.reviews_pending.clone(),
    );
    registry.register(
        "claims_paused",
        "1 while this instance neither claims approved reviews nor gives up other instances' claims: its clock is too far from the shared database's",
        m.claims_paused.clone(),
    );
    registry.register(
        "ca_expiry_timestamp_seconds",
        "When the interception CA stops being valid (Unix seconds): alert well before it",
        m.ca_expiry.clone(),
    );
    registry.register(
        "review_decision_seconds",
        "Time from hold to decision, by decision",
        m.decisions.clone(),
    );
    registry.register(
        "upstream_errors",
        "Failed upstream exchanges by kind",
        m.upstream_errors.clone(),
    );
    registry.register(
        "tls_handshakes",
        "Agent-side TLS handshakes on intercepted connections, by result",
        m.tls_handshakes.clone(),
    );
    registry.register(
        "tls_leaf_mints",
        "Leaf certificates minted from the interception CA",
        m.leaf_mints.clone(),
    );
    registry.register(
        "wait_reads",
        "Reviews read by waiting agents and held calls: each wait's first read, then one per change of its own review (or a change feed that lost notices) and per fallback re-check",
        m.wait_reads.clone(),
    );
    registry.register(
        "audit_append_seconds",
        "Time to make an audit entry durable (group commit included)",
        m.audit_append.clone(),
    );
    registry.register(
        "store_errors",
        "Store operations that failed, by operation and kind",
        m.store_errors.clone(),
    );
    registry.register(
        "background_chunk_failures",
        "Chunks of the expiry sweep (duty expiry) or of retention (duty retention) that could not be read or committed; their reviews are left for the next pass, and the chunks behind them go on",
        m.chunk_failures.clone(),
    );
    registry.register(
        "proxy_auth_failures",
        "Proxy requests refused with 407, by reason (missing, malformed or rejected credentials, a removed agent)",
        m.proxy_auth_failures.clone(),
    );
    registry.register(
        "executions",
        "Approved calls whose send ended (or was refused), by the state they ended in (executed, failed, outcome_unknown)",
        m.executions.clone(),
    );
    registry.register(
        "notifications",
        "Review notifications by channel and result (sent; failed after every retry; dropped: queue full or channel stopped; given_up: the fair queue gave up its newest)",
        m.notifications.clone(),
    );
    registry.register(
        "policy_changes",
        "Starts and reloads of rules, agents, reviewers, credentials and settings, and admin token rotations, by what changed and result (applied; refused: what was in force stays, and the next start would refuse it too; pending: in force from the next start)",
        m.policy_changes.clone(),
    );
    Metrics { registry, ..m }
});

/// A request's verdict (`allow`, `escalate`, ...) with the catalog's service and tool (`none`
/// when no rule named them).
pub fn request(verdict: &'static str, service: Option<&str>, tool: Option<&str>) {
    let (service, tool) = (service.unwrap_or("none"), tool.unwrap_or("none"));
    REQUEST_COUNTERS.with_borrow_mut(|counters| {
        let by_service = counters.entry(verdict).or_default();
        let by_tool = match by_service.get_mut(service) {
            Some(m) => m,
            None => by_service.entry(service.into()).or_default(),
        };
        match by_tool.get(tool) {
            Some(counter) => {
                counter.inc();
            }
            None => {
                let labels = RequestLabels {
                    verdict,
                    service: service.to_string(),
                    tool: tool.to_string(),
                };
                let counter = METRICS.requests.get_or_create(&labels).clone();
                counter.inc();
                by_tool.insert(tool.into(), counter);
            }
        }
    });
}

type CountersByTool = HashMap<Box<str>, Counter>;

thread_local! {
    /// Each thread's handles on the request counters it has used (a handle shares the family's
    /// atomic), so a request takes no lock and no allocation to count itself. Bounded as the
    /// labels are.
    static REQUEST_COUNTERS: RefCell<HashMap<&'static str, HashMap<Box<str>, CountersByTool>>> =
        RefCell::default();
}

/// Claims paused (this instance's clock too far from the shared database's) or resumed.
pub fn claims_paused(paused: bool) {
    METRICS.claims_paused.set(i64::from(paused));
}

/// A review decided (`approved`, `rejected`, `expired`) `waited` after it was held.
/// When the interception CA in use stops being valid (Unix seconds).
pub fn ca_expiry(unix_seconds: i64) {
    METRICS.ca_expiry.set(unix_seconds);
}

pub fn decision(decision: &'static str, waited: Duration) {
    METRICS
        .decisions
        .get_or_create(&DecisionLabels { decision })
        .observe(waited.as_secs_f64());
}

/// An upstream exchange failed; `kind` is one of a fixed few (`connect`, `exchange`, ...).
pub fn upstream_error(kind: &'static str) {
    METRICS
        .upstream_errors
        .get_or_create(&KindLabels { kind })
        .inc();
}

/// An agent-side TLS handshake ended: `ok`, `failed` or `timeout`.
pub fn tls_handshake(result: &'static str) {
    METRICS
        .tls_handshakes
        .get_or_create(&ResultLabels { result })
        .inc();
}

pub fn leaf_minted() {
    METRICS.leaf_mints.inc();
}

/// A wait read its review (`src/gate/wakeups.rs`).
pub fn wait_read() {
    METRICS.wait_reads.inc();
}

pub fn audit_appended(took: Duration) {
    METRICS.audit_append.observe(took.as_secs_f64());
}

/// A store operation (`get`, `range`, `commit`, `turn`) failed with an error of `kind`.
pub fn store_error(op: &'static str, kind: &'static str) {
    METRICS
        .store_errors
        .get_or_create(&StoreErrorLabels { op, kind })
        .inc();
}

/// A chunk of a background duty (`expiry`, `retention`) could not be read or committed.
pub fn chunk_failed(duty: &'static str) {
    METRICS
        .chunk_failures
        .get_or_create(&DutyLabels { duty })
        .inc();
}

/// A proxy request refused with 407 for `reason` (an `AuthError` code, `agent_removed`).
pub fn proxy_auth_failure(reason: &'static str) {
    METRICS
        .proxy_auth_failures
        .get_or_create(&ReasonLabels { reason })
        .inc();
}

/// A start, reload or rotation of `change` (`rules`, `agents`, …) ended as `result` (`applied`,
/// `refused`, `pending`).
pub fn policy_change(change: &'static str, result: &'static str) {
    METRICS
        .policy_changes
        .get_or_create(&PolicyLabels { change, result })
        .inc();
}

/// An approved call's send ended in `state` (`executed`, `failed`, `outcome_unknown`).
pub fn execution(state: &'static str) {
    METRICS
        .executions
        .get_or_create(&StateLabels { state })
        .inc();
}

/// A notification on `channel` ended as `result` (`sent`, `failed`, `dropped`, `given_up`).
pub fn notification(channel: &str, result: &'static str) {
    METRICS
        .notifications
        .get_or_create(&NotifyLabels {
            channel: channel.to_string(),
            result,
        })
        .inc();
}

/// The metrics as OpenMetrics text, with `pending` held reviews (`None`: the store did not
/// answer, the gauge keeps its last value).
pub fn encode(pending: Option<u64>) -> String {
    if let Some(n) = pending {
        METRICS
            .reviews_pending
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }
    let mut out = String::new();
    if prometheus_client::encoding::text::encode(&mut out, &METRICS.registry).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requests_counted(verdict: &'static str, service: &str, tool: &str) -> u64 {
        let labels = RequestLabels {
            verdict,
            service: service.to_string(),
            tool: tool.to_string(),
        };
        METRICS.requests.get_or_create(&labels).get()
    }

    #[test]
    fn per_thread_request_handles_count_into_the_shared_family() {
        let before = requests_counted("allow", "metrics-test", "none");
        request("allow", Some("metrics-test"), None);
        request("allow", Some("metrics-test"), None);
        std::thread::spawn(|| request("allow", Some("metrics-test"), None))
            .join()
            .expect("thread");
        request("block", Some("metrics-test"), Some("t"));
        assert_eq!(
            requests_counted("allow", "metrics-test", "none"),
            before + 3
        );
        assert_eq!(requests_counted("block", "metrics-test", "t"), 1);
    }
}
