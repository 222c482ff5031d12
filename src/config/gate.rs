//! `[gate]`: the hold queue: how long reviews live, body caps, waits, execution limits.

use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, Ctx};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(super) struct RawGate {
    pub(super) review_expiry: String,
    pub(super) max_body_bytes: usize,
    pub(super) max_buffered_bytes: usize,
    pub(super) max_wait: String,
    pub(super) sweep_interval: String,
    pub(super) max_result_bytes: usize,
    pub(super) execution_timeout: String,
    pub(super) execution_lease: Option<String>,
    pub(super) money_budget_usd: f64,
    pub(super) max_pending_per_agent: usize,
}

impl Default for RawGate {
    fn default() -> Self {
        Self {
            review_expiry: "24h".into(),
            max_body_bytes: 1024 * 1024,
            max_buffered_bytes: 256 << 20,
            max_wait: "5m".into(),
            sweep_interval: "5s".into(),
            max_result_bytes: 256 * 1024,
            execution_timeout: "120s".into(),
            execution_lease: None,
            money_budget_usd: 1000.0,
            max_pending_per_agent: 500,
        }
    }
}

#[derive(Debug, Clone)]
pub struct GateConfig {
    pub review_expiry: Duration,
    /// Largest request body a gated call may have (it is buffered and stored); larger: 413.
    pub max_body_bytes: usize,
    /// Bytes of such bodies buffered at once, all agents together; a body that would pass it
    /// is refused (503 `buffer_full`, `Retry-After`), nothing stored or sent. At least
    /// `max_body_bytes`.
    pub max_buffered_bytes: usize,
    /// Ceiling on `Airlock-Wait` and `?wait=`.
    pub max_wait: Duration,
    pub sweep_interval: Duration,
    /// Upstream response body kept on an executed review.
    pub max_result_bytes: usize,
    /// Longest an approved request may take upstream; past it the outcome is `outcome_unknown`.
    pub execution_timeout: Duration,
    /// How long an execution's claim holds: past it, an `executing` review whose instance never
    /// recorded the outcome (killed mid-send) becomes `outcome_unknown`, on any instance, and is
    /// never re-sent. Longer than `execution_timeout` (default: that plus 30 s).
    pub execution_lease: Duration,
    /// `store.retention`: finished reviews older than this are removed (`None`: kept).
    pub retention: Option<Duration>,
    /// Money (US dollars, at a high estimate) an agent's soft-gated calls may move in the last
    /// 24 hours, counted by the hour (a call counts for 24 to 25 hours; rules' `spends`); a call
    /// that would pass it is held. 0: every such call that moves any money is held.
    pub money_budget_usd: f64,
    /// Reviews one agent may have pending at once; a gated call past it is refused (429, not
    /// held, not sent), so one agent's flood cannot bury other reviews or their notifications.
    /// 0: no cap (benchmarks).
    pub max_pending_per_agent: usize,
}

/// Ceiling on `gate.max_pending_per_agent`: a hold reads up to that many index keys.
const MAX_PENDING_CAP: usize = 10_000;

const HOUR: Duration = Duration::from_secs(3600);

/// The durations' bounds (inclusive), each with how it is written in the error: a value past
/// them is a typo (`"500000000y"`), and zero would expire every hold at once or spin the sweeper.
const BOUNDS: &[(&str, Duration, Duration, &str)] = &[
    (
        "gate.review_expiry",
        Duration::from_millis(1),
        Duration::from_secs(30 * 86_400),
        "above zero and at most \"30d\"",
    ),
    (
        "gate.max_wait",
        Duration::ZERO,
        HOUR,
        "at most \"1h\" (\"0s\": no inline wait)",
    ),
    (
        "gate.sweep_interval",
        Duration::from_millis(1),
        HOUR,
        "above zero and at most \"1h\"",
    ),
    (
        "gate.execution_timeout",
        Duration::from_millis(1),
        HOUR,
        "above zero and at most \"1h\"",
    ),
    (
        "gate.execution_lease",
        Duration::ZERO,
        Duration::from_secs(2 * 3600),
        "at most \"2h\"",
    ),
];

/// The largest `gate.max_body_bytes` and `gate.max_result_bytes`.
const MAX_STORED_BYTES: usize = 64 << 20;

/// `d`, the value of `field`, within its [`BOUNDS`].
fn bounded(cx: &Ctx, field: &str, d: Duration) -> Result<Duration, ConfigError> {
    match BOUNDS.iter().find(|(f, ..)| *f == field) {
        Some((_, min, max, words)) if d < *min || d > *max => Err(cx.invalid(
            field,
            format!(
                "{} is out of range: must be {words}",
                humantime::format_duration(d)
            ),
        )),
        _ => Ok(d),
    }
}

pub(super) fn check(g: RawGate, cx: &Ctx) -> Result<GateConfig, ConfigError> {
    let dur = |field: &str, v: &str| bounded(cx, field, cx.dur(field, v)?);
    let execution_timeout = dur("gate.execution_timeout", &g.execution_timeout)?;
    let execution_lease = match &g.execution_lease {
        Some(lease) => dur("gate.execution_lease", lease)?,
        None => execution_timeout + Duration::from_secs(30),
    };
    let gate = GateConfig {
        review_expiry: dur("gate.review_expiry", &g.review_expiry)?,
        max_body_bytes: g.max_body_bytes,
        max_buffered_bytes: g.max_buffered_bytes,
        max_wait: dur("gate.max_wait", &g.max_wait)?,
        sweep_interval: dur("gate.sweep_interval", &g.sweep_interval)?,
        max_result_bytes: g.max_result_bytes,
        execution_timeout,
        execution_lease,
        retention: None,
        money_budget_usd: g.money_budget_usd,
        max_pending_per_agent: g.max_pending_per_agent,
    };
    for (field, v) in [
        ("gate.max_body_bytes", g.max_body_bytes),
        ("gate.max_result_bytes", g.max_result_bytes),
    ] {
        if v > MAX_STORED_BYTES {
            return Err(cx.invalid(
                field,
                format!(
                    "at most {MAX_STORED_BYTES} (64 MiB): a held request and its answer are \
                     buffered in memory and stored whole with its review"
                ),
            ));
        }
    }
    if g.max_buffered_bytes < g.max_body_bytes {
        return Err(cx.invalid(
            "gate.max_buffered_bytes",
            format!(
                "must be at least gate.max_body_bytes ({}): otherwise no body of that size \
                 could ever be read",
                g.max_body_bytes
            ),
        ));
    }
    if g.max_pending_per_agent > MAX_PENDING_CAP {
        return Err(cx.invalid(
            "gate.max_pending_per_agent",
            format!("at most {MAX_PENDING_CAP} (each hold counts up to it), or 0 for no cap"),
        ));
    }
    if !g.money_budget_usd.is_finite() || g.money_budget_usd < 0.0 {
        return Err(cx.invalid(
            "gate.money_budget_usd",
            "must be a number of US dollars, 0 or more".into(),
        ));
    }
    if gate.execution_lease < gate.execution_timeout + Duration::from_secs(1) {
        return Err(cx.invalid(
            "gate.execution_lease",
            "must be at least 1s longer than gate.execution_timeout (an instance still sending \
             must never lose its claim; the difference covers recording the claim and the \
             clocks of instances sharing a store disagreeing)"
                .into(),
        ));
    }
    Ok(gate)
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    /// Left from the nineteenth session: `review_expiry = "0s"` expired every hold at once and
    /// `"500000000y"` or a `"100y"` sweep or timeout was taken. Each is refused by name.
    #[test]
    fn durations_out_of_range_are_refused_by_name() {
        let cases: &[(&str, &str)] = &[
            (
                "review_expiry = \"0s\"",
                "gate.review_expiry: 0s is out of range",
            ),
            ("review_expiry = \"500000000y\"", "gate.review_expiry:"),
            ("review_expiry = \"31d\"", "at most \"30d\""),
            (
                "sweep_interval = \"0s\"",
                "gate.sweep_interval: 0s is out of range",
            ),
            ("sweep_interval = \"100y\"", "gate.sweep_interval:"),
            ("execution_timeout = \"0s\"", "gate.execution_timeout:"),
            ("execution_timeout = \"100y\"", "gate.execution_timeout:"),
            ("execution_lease = \"100y\"", "gate.execution_lease:"),
            ("max_wait = \"100y\"", "gate.max_wait:"),
            // The lease's own bound holds for the default too: timeout + 30 s.
            (
                "execution_timeout = \"1h\"\nexecution_lease = \"1h\"",
                "at least 1s longer",
            ),
        ];
        for (gate, want) in cases {
            let text = format!("[gate]\n{gate}\n");
            let err = Config::from_toml("t.toml", &text)
                .expect_err(gate)
                .to_string();
            assert!(err.contains(want), "{gate}: {err}");
        }
        for gate in [
            "review_expiry = \"30d\"",
            "sweep_interval = \"1h\"\nmax_wait = \"1h\"",
            "sweep_interval = \"50ms\"",
            "execution_timeout = \"1h\"",
            "execution_timeout = \"1h\"\nexecution_lease = \"2h\"",
            "max_wait = \"0s\"",
        ] {
            let text = format!("[gate]\n{gate}\n");
            assert!(Config::from_toml("t.toml", &text).is_ok(), "{gate}");
        }
    }

    /// Review of session 22: `config check` took `upstream.connect_timeout =
    /// "18446744073709551615s"` (every dial then panicked adding it to the clock, and an
    /// approval ended `outcome_unknown` with nothing sent), the same `proxy.header_read_timeout`
    /// (every connection panicked), and `proxy.max_connections = 18446744073709551615` (`serve`
    /// panicked on an overflow). Timeouts are at most a day, other durations ten years,
    /// connection limits a million, and the stored body and answer caps 64 MiB.
    #[test]
    fn unbounded_timeouts_and_limits_are_refused_by_name() {
        let huge = "\"18446744073709551615s\"";
        let cases = [
            (
                format!("[upstream]\nconnect_timeout = {huge}"),
                "upstream.connect_timeout:",
            ),
            (
                format!("[proxy]\nheader_read_timeout = {huge}"),
                "proxy.header_read_timeout:",
            ),
            (
                "[proxy]\nidle_timeout = \"25h\"".to_string(),
                "more than a day",
            ),
            (
                format!("[proxy]\nshutdown_grace = {huge}"),
                "more than 10 years",
            ),
            (
                format!("[upstream]\npool_idle_timeout = {huge}"),
                "upstream.pool_idle_timeout:",
            ),
            (
                format!("[audit]\ncheckpoint_interval = {huge}"),
                "audit.checkpoint_interval:",
            ),
            (
                "[proxy]\nmax_connections = 18446744073709551615".to_string(),
                "proxy.max_connections: must be at most 1000000",
            ),
            (
                "[admin]\nmax_connections = 1000001\nper_ip_connections = 1".to_string(),
                "admin.max_connections: must be at most 1000000",
            ),
            (
                "[gate]\nmax_body_bytes = 100000000".to_string(),
                "gate.max_body_bytes: at most 67108864",
            ),
            (
                "[gate]\nmax_result_bytes = 100000000".to_string(),
                "gate.max_result_bytes: at most 67108864",
            ),
            (
                "[gate]\nmax_body_bytes = 2000\nmax_buffered_bytes = 1999".to_string(),
                "gate.max_buffered_bytes: must be at least gate.max_body_bytes (2000)",
            ),
            (
                "[proxy]\nmax_requests_in_flight_per_agent = 100001".to_string(),
                "proxy.max_requests_in_flight_per_agent: must be at most 100000",
            ),
        ];
        for (text, want) in &cases {
            let err = Config::from_toml("t.toml", text)
                .expect_err(text)
                .to_string();
            assert!(err.contains(want), "{text}: {err}");
        }
        let ok = "[proxy]\nidle_timeout = \"24h\"\nmax_connections = 1000000\n\
                  [gate]\nmax_body_bytes = 67108864\n";
        assert!(Config::from_toml("t.toml", ok).is_ok());
        let ok = "[proxy]\nmax_requests_in_flight_per_agent = 0\n\
                  [gate]\nmax_body_bytes = 2000\nmax_buffered_bytes = 2000\n";
        assert!(Config::from_toml("t.toml", ok).is_ok());
    }
}
