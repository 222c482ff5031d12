//! `AIRLOCK_LOG`, read strictly: tracing reads a bare word as a target, so a misspelt level
//! (`inf`, `warning`) would show only that target's lines, that is none at all. Here a bare
//! word must be a level (`warning` is taken for `warn`), a `target=level` directive's level
//! too; anything else is refused with an error naming the variable.

use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

/// The variable read.
pub(super) const VAR: &str = "AIRLOCK_LOG";

/// The filter when `AIRLOCK_LOG` is unset or empty.
const DEFAULT: &str = "info";

/// A level as written, in the spelling tracing reads (`warning` is `warn`); `None` if it is
/// not a level.
fn level(word: &str) -> Option<String> {
    let word = word.trim();
    let word = if word.eq_ignore_ascii_case("warning") {
        "warn"
    } else {
        word
    };
    word.parse::<LevelFilter>()
        .ok()
        .map(|_| word.to_ascii_lowercase())
}

/// `value` (the variable's value, if set) as a filter, or why it is refused.
pub(super) fn parse(value: Option<&str>) -> Result<EnvFilter, String> {
    let value = value.map(str::trim).filter(|v| !v.is_empty());
    let Some(value) = value else {
        return Ok(EnvFilter::new(DEFAULT));
    };
    let levels = "trace, debug, info, warn (or warning), error, off";
    let mut directives = Vec::new();
    for d in value.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let fixed = match d.rsplit_once('=') {
            // `target=level`, `target[span]=level`: the level must be one.
            Some((target, lvl)) => match level(lvl) {
                Some(lvl) => format!("{target}={lvl}"),
                None => return Err(format!("{VAR}: {d:?}: {lvl:?} is not a level ({levels})")),
            },
            None => level(d).ok_or_else(|| {
                format!(
                    "{VAR}: {d:?} is not a level ({levels}); to name a target write \
                     TARGET=LEVEL (a bare word would show only that target's lines)"
                )
            })?,
        };
        directives.push(fixed);
    }
    if directives.is_empty() {
        return Ok(EnvFilter::new(DEFAULT));
    }
    EnvFilter::try_new(directives.join(",")).map_err(|e| format!("{VAR}: {value:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn levels_and_targets_are_read_and_typos_refused() {
        for ok in [
            None,
            Some(""),
            Some("info"),
            Some("WARN"),
            Some("warning"),
            Some("airlock=debug,warn"),
            Some("airlock::gate=warning"),
        ] {
            assert!(parse(ok).is_ok(), "{ok:?}");
        }
        for bad in ["inf", "warnings", "airlock", "airlock=loud", "info,airlock"] {
            let e = parse(Some(bad)).err().unwrap_or_default();
            assert!(e.starts_with("AIRLOCK_LOG: "), "{bad}: {e}");
        }
        assert_eq!(
            parse(Some("warning"))
                .map(|f| f.to_string())
                .ok()
                .as_deref(),
            Some("warn")
        );
    }
}
