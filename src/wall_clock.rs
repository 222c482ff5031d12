//! The wall clock, in milliseconds since the Unix epoch: what reviews, agents' `added` times and
//! links are stamped with (the gate takes it through its `Clock`, which tests replace).

/// Now, in ms since the epoch (0 before it; saturating far past it).
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
