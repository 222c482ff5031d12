//! Currency-aware amounts: Stripe amounts are in the smallest unit of their currency; limits are
//! in US dollars, converted conservatively (see [`over`]).

/// Decimal places of a currency (lower-case ISO code), or `None` if unknown.
pub fn exponent(currency: &str) -> Option<u32> {
    const ZERO: &[&str] = &[
        "bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
        "xaf", "xof", "xpf",
    ];
    const THREE: &[&str] = &["bhd", "jod", "kwd", "omr", "tnd"];
    const TWO: &[&str] = &[
        "usd", "eur", "gbp", "cad", "aud", "nzd", "chf", "sek", "nok", "dkk", "pln", "czk", "huf",
        "ron", "bgn", "mxn", "brl", "inr", "sgd", "hkd", "zar", "ils", "aed", "sar", "thb", "myr",
        "php", "idr", "try", "twd", "cny", "egp", "ngn", "kes", "cop", "pen", "ars", "uah", "isk",
    ];
    let is = |list: &[&str]| list.iter().any(|c| c.eq_ignore_ascii_case(currency));
    if is(ZERO) {
        Some(0)
    } else if is(THREE) {
        Some(3)
    } else if is(TWO) {
        Some(2)
    } else {
        None
    }
}

/// An upper bound on one major unit of `currency` in US dollars, for the currencies worth more
/// than a dollar (a high estimate on purpose: a limit converted with it holds early, never late).
/// Every other known currency counts as at most one dollar a unit.
fn usd_ceiling(currency: &str) -> f64 {
    const STRONG: &[(&str, f64)] = &[
        ("kwd", 3.9),
        ("bhd", 3.2),
        ("omr", 3.1),
        ("jod", 1.7),
        ("gbp", 1.6),
        ("chf", 1.5),
        ("eur", 1.4),
    ];
    STRONG
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(currency))
        .map_or(1.0, |(_, usd)| *usd)
}

/// Is `amount` (minor units of `currency`) possibly worth more than `usd` US dollars? A currency
/// worth more than a dollar is converted at a high estimate ([`usd_ceiling`]); any other compares
/// in its own major units (¥101 is "over 100"), which holds earlier than a real rate would.
/// `Err` names why it cannot tell (the caller escalates).
pub fn over(amount: f64, currency: &str, usd: f64) -> Result<bool, &'static str> {
    Ok(usd_ceiling_of(Some(amount), Some(currency))? > usd)
}

/// `amount` (minor units of `currency`) in US dollars at the high estimate [`over`] uses. `Err`
/// names why it cannot tell: no amount, no or an unknown currency, an amount that is not a
/// number of 0 or more.
pub fn usd_ceiling_of(amount: Option<f64>, currency: Option<&str>) -> Result<f64, &'static str> {
    let amount = amount.ok_or("amount_unparseable")?;
    let currency = currency.ok_or("unknown_currency")?;
    let exp = exponent(currency).ok_or("unknown_currency")?;
    if !amount.is_finite() || amount < 0.0 {
        return Err("amount_unparseable");
    }
    let major = amount / 10f64.powi(exp as i32);
    Ok(major * usd_ceiling(currency))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_by_currency() {
        assert_eq!(over(10_000.0, "usd", 100.0), Ok(false));
        assert_eq!(over(10_001.0, "USD", 100.0), Ok(true));
        assert_eq!(over(100.0, "jpy", 100.0), Ok(false));
        assert_eq!(over(101.0, "jpy", 100.0), Ok(true));
        // Worth more than a dollar a unit: 25.000 KWD may be $98, 26.000 KWD is over $100.
        assert_eq!(over(25_000.0, "kwd", 100.0), Ok(false));
        assert_eq!(over(26_000.0, "kwd", 100.0), Ok(true));
        assert_eq!(over(99_000.0, "bhd", 100.0), Ok(true));
        assert_eq!(over(9_900.0, "gbp", 100.0), Ok(true));
        assert_eq!(over(7_000.0, "eur", 100.0), Ok(false));
        assert_eq!(over(9_999.0, "EUR", 100.0), Ok(true));
        assert_eq!(over(1.0, "xyz", 100.0), Err("unknown_currency"));
    }
}
