//! Currency-aware amounts: Stripe amounts are in the smallest unit of their currency.

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

/// Is `amount` (minor units) above `major` whole units of `currency`? `Err` names why it
/// cannot tell (the caller escalates).
pub fn over(amount: f64, currency: &str, major: f64) -> Result<bool, &'static str> {
    let exp = exponent(currency).ok_or("unknown_currency")?;
    if !amount.is_finite() || amount < 0.0 {
        return Err("amount_unparseable");
    }
    Ok(amount > major * 10f64.powi(exp as i32))
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
        assert_eq!(over(100_000.0, "kwd", 100.0), Ok(false));
        assert_eq!(over(100_001.0, "kwd", 100.0), Ok(true));
        assert_eq!(over(1.0, "xyz", 100.0), Err("unknown_currency"));
    }
}
