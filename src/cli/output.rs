//! What the CLI prints besides command results: `serve`'s address lines, notes, warnings and
//! errors, and the logs; all as text or, with `--log-format json`, as JSON records.

use airlock::log_line::LineFormat;

use super::log_sink::LogSink;

/// `--log-format json` is in force (set once by [`init_logging`]).
static JSON_OUTPUT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn json_output() -> bool {
    JSON_OUTPUT.get().copied().unwrap_or(false)
}

/// One JSON record shaped like the JSON log lines (`timestamp`, `level`, `fields`, `target`).
fn json_record(level: &str, message: &str, fields: &[(&str, String)]) -> String {
    let mut f = serde_json::Map::new();
    f.insert("message".into(), message.into());
    for (k, v) in fields {
        f.insert((*k).into(), v.clone().into());
    }
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    serde_json::json!({"timestamp": now, "level": level, "fields": f, "target": "airlock"})
        .to_string()
}

/// A line on stdout that scripts read (`serve`'s listen addresses): as written, or as one JSON
/// record carrying `fields` with `--log-format json`.
pub(crate) fn announce(line: &str, fields: &[(&str, String)]) {
    if json_output() {
        println!("{}", json_record("INFO", line, fields));
    } else {
        println!("{line}");
    }
}

/// A note for the person at the terminal, on stderr: as written, or one JSON record.
pub(crate) fn note(line: &str) {
    flush_logs();
    if json_output() {
        eprintln!("{}", json_record("INFO", line, &[]));
    } else {
        eprintln!("{line}");
    }
}

/// A warning on stderr: `warning: …`, or one JSON record.
pub(crate) fn warn(line: &str) {
    flush_logs();
    if json_output() {
        eprintln!("{}", json_record("WARN", line, &[]));
    } else {
        eprintln!("warning: {line}");
    }
}

/// Prints a failed command's error on stderr: one line, `error: …` or, with `--log-format
/// json`, one JSON record.
pub fn report_error(message: &str) {
    flush_logs();
    let message = message.replace(['\n', '\r'], " ");
    if json_output() {
        eprintln!("{}", json_record("ERROR", &message, &[]));
    } else {
        eprintln!("error: {message}");
    }
}

/// Where log lines go (see [`LogSink`]), once [`init_logging`] set it up: in batches for
/// `serve`, straight to stderr otherwise.
static LOG_SINK: std::sync::OnceLock<LogSink> = std::sync::OnceLock::new();

/// Writes out the log lines still queued (see [`LogSink`]): before anything else goes to
/// stderr, and before the process exits.
pub fn flush_logs() {
    if let Some(sink) = LOG_SINK.get() {
        sink.flush();
    }
}

/// Logs go to stderr, filtered by $AIRLOCK_LOG (default: info; see `log_filter.rs`), as text
/// or JSON, written by [`LineFormat`]. Text has ANSI colours only on a terminal, and never with
/// `NO_COLOR` set (https://no-color.org). With `batched` (`serve`) a thread of their own writes
/// them in batches. An `AIRLOCK_LOG` that is not a filter is `Err` (why), logging set up with
/// the default meanwhile so the error can be reported: the command must not run half-silenced.
pub fn init_logging(format: &str, batched: bool) -> Result<(), String> {
    use std::io::IsTerminal;
    let json = format == "json";
    let _ = JSON_OUTPUT.set(json);
    let value = std::env::var(super::log_filter::VAR);
    let (filter, refused) = match super::log_filter::parse(value.as_deref().ok()) {
        Ok(f) => (f, None),
        Err(why) => (tracing_subscriber::EnvFilter::new("info"), Some(why)),
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let ansi = !json && !no_color && std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi);
    let sink = LOG_SINK.get_or_init(|| {
        if batched {
            LogSink::start(std::io::stderr())
        } else {
            LogSink::direct()
        }
    });
    let builder = builder.with_writer(sink.clone());
    if json {
        builder.json().event_format(LineFormat::json()).init();
    } else {
        builder.event_format(LineFormat::text()).init();
    }
    refused.map_or(Ok(()), Err)
}
