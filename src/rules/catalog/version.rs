//! A service's API-version header (Stripe-Version) against the oldest version whose reading
//! of parameters the catalog knows: old versions accept legacy parameter names (`plan` on a
//! customer, `managed` accounts) that the catalog's rules do not judge.

/// A service's API-version header and the oldest version the catalog reads (`YYYY-MM-DD`).
#[derive(Debug, Clone, PartialEq)]
pub(super) struct VersionFloor {
    pub(super) header: http::HeaderName,
    pub(super) floor: String,
}

/// `YYYY-MM-DD`, optionally followed by `.name` (Stripe's `2025-09-30.clover`, `.preview`).
pub(super) fn is_version_date(v: &str) -> bool {
    let b = v.as_bytes();
    let date = b.len() >= 10
        && b[..10].iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    date && match b.get(10) {
        None => true,
        Some(b'.') => {
            b.len() > 11
                && b[11..]
                    .iter()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_')
        }
        Some(_) => false,
    }
}

/// A write's API version, where the service has a floor: none given is the account's default
/// (not judged); a version given twice, one Airlock cannot read, or one older than the floor
/// (whose parameters the catalog does not know) holds.
pub(super) fn version_guard(
    v: &VersionFloor,
    headers: &http::HeaderMap,
) -> Option<(&'static str, String)> {
    let values = super::guard::header_values(headers, &v.header);
    let first = *values.first()?;
    if values.len() > 1 {
        return Some((
            "version_ambiguous",
            format!("{} is given more than once", v.header),
        ));
    }
    let text = match first.to_str() {
        Ok(t) if is_version_date(t) => t,
        _ => {
            return Some((
                "version_unreadable",
                format!(
                    "{} {:?} is not a version like {}",
                    v.header,
                    String::from_utf8_lossy(first.as_bytes()),
                    v.floor
                ),
            ))
        }
    };
    (text[..10] < *v.floor).then(|| {
        (
            "version_old",
            format!(
                "{} {text} is older than {}, the oldest version whose parameters the catalog reads (an old version may accept parameters that move money under names it does not judge)",
                v.header, v.floor
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floor() -> VersionFloor {
        VersionFloor {
            header: http::HeaderName::from_static("stripe-version"),
            floor: "2020-08-27".into(),
        }
    }

    #[test]
    fn versions_table() {
        let cases: &[(&[&[u8]], Option<&str>)] = &[
            (&[], None),
            (&[b"2020-08-27"], None),
            (&[b"2026-10-28"], None),
            (&[b"2025-09-30.clover"], None),
            (&[b"2026-01-28.preview"], None),
            (&[b"2020-08-26"], Some("version_old")),
            (&[b"2017-05-25"], Some("version_old")),
            (&[b"2014-01-31.acacia"], Some("version_old")),
            (&[b"2026-10-28", b"2015-01-01"], Some("version_ambiguous")),
            (&[b"2026-10-28", b"2026-10-28"], Some("version_ambiguous")),
            (&[b"2026-10-28, 2015-01-01"], Some("version_unreadable")),
            (&[b"2026-10-28."], Some("version_unreadable")),
            (&[b"2026-10-28.Clover"], Some("version_unreadable")),
            (&[b"2026-10-28x"], Some("version_unreadable")),
            (&[b"2026-1-28"], Some("version_unreadable")),
            (&[b"latest"], Some("version_unreadable")),
            (&[b""], Some("version_unreadable")),
            (&[b"2026-10-28\xff"], Some("version_unreadable")),
        ];
        // `Stripe_Version` is the same variable to Rack and CGI.
        let mut h = http::HeaderMap::new();
        h.insert(
            "stripe_version",
            http::HeaderValue::from_static("2015-01-01"),
        );
        assert_eq!(
            version_guard(&floor(), &h).map(|(c, _)| c),
            Some("version_old")
        );
        h.insert(
            "stripe-version",
            http::HeaderValue::from_static("2026-10-28"),
        );
        assert_eq!(
            version_guard(&floor(), &h).map(|(c, _)| c),
            Some("version_ambiguous")
        );
        for (values, want) in cases {
            let mut h = http::HeaderMap::new();
            for v in *values {
                h.append(
                    "stripe-version",
                    http::HeaderValue::from_bytes(v).expect("test value"),
                );
            }
            let got = version_guard(&floor(), &h).map(|(code, _)| code);
            assert_eq!(got, *want, "{values:?}");
        }
    }

    #[test]
    fn floor_must_be_a_date() {
        assert!(is_version_date("2020-08-27"));
        assert!(!is_version_date("2020/08/27"));
        assert!(!is_version_date("20-08-27"));
    }
}
