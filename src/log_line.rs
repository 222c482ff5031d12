//! How a log line is written: [`LineFormat`] writes the same bytes as tracing-subscriber's own
//! text (`Full`) and JSON formats with less work per line, and one difference: in text, a
//! line break or other control character in any value is escaped (`\n`), where the stock
//! format escapes terminal controls in the message only, so no value can forge a log line.
//!
//! At the default level every request writes an access-log line, and the stock formatters
//! spent about 6% of Airlock's CPU per request on it (perf, 16 keep-alive connections): a
//! calendar date computed for every line, one `write!` through `core::fmt` per field, colour
//! wrappers even with colours off. This one keeps the date of the current second per thread,
//! writes names, strings, integers, booleans and most floats (zmij) directly, and leaves
//! `core::fmt` to values only it can print (`Debug` and `Display` values, the rare floats
//! zmij writes differently). Lines from the `log` bridge or inside a span, and text with
//! colours on, go to the stock formatter. `tests` compare both formatters' output line by
//! line.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{SystemTime, UNIX_EPOCH};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::{self, Format, FormatEvent, FormatFields, Json, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::FmtContext;
use tracing_subscriber::registry::LookupSpan;

/// Writes log lines as tracing-subscriber's text or JSON format does (see the module doc).
#[derive(Debug, Clone)]
pub struct LineFormat {
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Text(Format),
    Json(Format<Json>),
}

impl LineFormat {
    /// tracing-subscriber's default text lines: `<time> <LEVEL> <target>: <message> k=v …`.
    pub fn text() -> Self {
        LineFormat {
            kind: Kind::Text(format::format()),
        }
    }

    /// tracing-subscriber's JSON lines: `{"timestamp":…,"level":…,"fields":{…},"target":…}`.
    pub fn json() -> Self {
        LineFormat {
            kind: Kind::Json(format::format().json()),
        }
    }
}

thread_local! {
    /// A line being written, and the date of the second last written on this thread.
    static SCRATCH: RefCell<(String, Clock)> = RefCell::new((String::new(), Clock::default()));
}

/// Longest line whose buffer a thread keeps between lines.
const KEPT_CAPACITY: usize = 16 * 1024;

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let bridged = event.metadata().fields().field("log.target").is_some();
        if bridged || ctx.event_scope().is_some() {
            return self.stock(ctx, writer, event);
        }
        let written = SCRATCH.try_with(|cell| {
            let Ok(mut guard) = cell.try_borrow_mut() else {
                return None;
            };
            let (line, clock) = &mut *guard;
            line.clear();
            match self.kind {
                Kind::Text(_) => text_line(line, clock, &writer, event),
                Kind::Json(_) => json_line(line, clock, event),
            }
            let result = writer.write_str(line);
            if line.capacity() > KEPT_CAPACITY {
                *line = String::new();
            }
            Some(result)
        });
        match written {
            Ok(Some(result)) => result,
            // A line logged while this thread formats another one: the stock formatter.
            _ => self.stock(ctx, writer, event),
        }
    }
}

impl LineFormat {
    /// The line as tracing-subscriber's own formatter writes it.
    fn stock<S, N>(
        &self,
        ctx: &FmtContext<'_, S, N>,
        writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
        N: for<'a> FormatFields<'a> + 'static,
    {
        match &self.kind {
            Kind::Text(f) => f.format_event(ctx, writer, event),
            Kind::Json(f) => f.format_event(ctx, writer, event),
        }
    }
}

/// Writes one text line into `line`; on a terminal (`writer` takes ANSI escapes) with the
/// time and target dimmed and the level coloured, as the stock format does, and its values
/// escaped all the same (the stock format escapes a message's only).
fn text_line(line: &mut String, clock: &mut Clock, writer: &Writer<'_>, event: &Event<'_>) {
    const DIM: &str = "\x1b[2m";
    const RESET: &str = "\x1b[0m";
    let meta = event.metadata();
    let coloured = writer.has_ansi_escapes();
    if coloured {
        line.push_str(DIM);
    }
    clock.write_now(line);
    if coloured {
        line.push_str(RESET);
    }
    // The level right-aligned in five columns, as `{:>5}` writes it.
    let level = meta.level().as_str();
    line.push(' ');
    if level.len() < 5 {
        line.push(' ');
    }
    if coloured {
        line.push_str(match *meta.level() {
            tracing::Level::ERROR => "\x1b[31m",
            tracing::Level::WARN => "\x1b[33m",
            tracing::Level::INFO => "\x1b[32m",
            tracing::Level::DEBUG => "\x1b[34m",
            tracing::Level::TRACE => "\x1b[35m",
        });
    }
    line.push_str(level);
    if coloured {
        line.push_str(RESET);
    }
    line.push(' ');
    if coloured {
        line.push_str(DIM);
    }
    line.push_str(meta.target());
    line.push(':');
    if coloured {
        line.push_str(RESET);
    }
    line.push(' ');
    event.record(&mut TextFields {
        line,
        sanitize: writer.sanitizes_ansi_escapes(),
        first: true,
    });
    line.push('\n');
}

/// `name=value` pairs as tracing-subscriber's `DefaultVisitor` writes them, control characters
/// escaped in every value.
struct TextFields<'a> {
    line: &'a mut String,
    /// Escape control characters (the writer's setting, on unless turned off).
    sanitize: bool,
    first: bool,
}

impl TextFields<'_> {
    /// The separator and `name=`; false for a field that is not written (`log.` metadata).
    fn start(&mut self, field: &Field) -> bool {
        let name = field.name();
        if name.starts_with("log.") {
            return false;
        }
        if !std::mem::take(&mut self.first) {
            self.line.push(' ');
        }
        if name != "message" {
            self.line.push_str(name.strip_prefix("r#").unwrap_or(name));
            self.line.push('=');
        }
        true
    }
}

impl Visit for TextFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if !self.start(field) {
            return;
        }
        if field.name() == "message" {
            let from = self.line.len();
            self.line.push_str(value);
            self.escape_controls_from(from);
        } else if value
            .bytes()
            .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
        {
            self.line.push('"');
            self.line.push_str(value);
            self.line.push('"');
        } else {
            let _ = write!(self.line, "{value:?}");
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        if self.start(field) {
            self.line.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        if self.start(field) {
            self.line.push_str(itoa::Buffer::new().format(value));
        }
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        if self.start(field) {
            self.line.push_str(if value { "true" } else { "false" });
        }
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        if self.start(field) {
            debug_f64(self.line, value);
        }
    }

    /// `name=<error>`, and ` name.sources=[<source>, …]` when it has sources, as the stock
    /// format writes it.
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        if !self.start(field) {
            return;
        }
        let from = self.line.len();
        let _ = write!(self.line, "{value}");
        let mut source = value.source();
        if source.is_some() {
            let _ = write!(self.line, " {}.sources=[", field.name());
            let mut first = true;
            while let Some(error) = source {
                if !std::mem::take(&mut first) {
                    self.line.push_str(", ");
                }
                let _ = write!(self.line, "{error}");
                source = error.source();
            }
            self.line.push(']');
        }
        self.escape_controls_from(from);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if !self.start(field) {
            return;
        }
        let from = self.line.len();
        let _ = write!(self.line, "{value:?}");
        self.escape_controls_from(from);
    }
}

impl TextFields<'_> {
    /// Escapes, in what was written from `from` on, the characters a terminal or a log reader
    /// would act on: the C0 controls but tab (`\n`, `\r`, `\x1b`, …), DEL and the C1
    /// controls (`\u{9b}`). tracing-subscriber escapes the terminal controls in a message only.
    fn escape_controls_from(&mut self, from: usize) {
        if !self.sanitize {
            return;
        }
        let written = &self.line.as_bytes()[from..];
        // Printable ASCII throughout (the usual case), checked without a branch per byte.
        if !written
            .iter()
            .fold(false, |odd, &b| odd | !(0x20..0x7f).contains(&b))
        {
            return;
        }
        let control = |b: &u8| (*b < 0x20 && *b != b'\t') || *b == 0x7f || *b == 0xc2;
        if !written.iter().any(control) {
            return;
        }
        let written = self.line.split_off(from);
        for ch in written.chars() {
            let _ = match ch {
                '\n' => self.line.write_str("\\n"),
                '\r' => self.line.write_str("\\r"),
                '\t' => self.line.write_char(ch),
                '\0'..='\x1f' | '\x7f' => write!(self.line, "\\x{:02x}", ch as u32),
                '\u{80}'..='\u{9f}' => write!(self.line, "\\u{{{:x}}}", ch as u32),
                _ => self.line.write_char(ch),
            };
        }
    }
}

/// `value` as `{:?}` (the stock text format) writes it, by zmij where both write the same
/// text: zero and 1e-4 ≤ |value| < 1e16 in plain decimal (below 1e-4 `{:?}` writes an
/// exponent, zmij only below 1e-5), unless two shortest texts are equally close.
fn debug_f64(line: &mut String, value: f64) {
    let magnitude = value.abs();
    if (magnitude == 0.0 || (1e-4..1e16).contains(&magnitude)) && !may_tie(value) {
        line.push_str(zmij::Buffer::new().format_finite(value));
    } else {
        let _ = write!(line, "{value:?}");
    }
}

/// Whether `value` (finite, below 1e16) may lie exactly halfway between two shortest texts
/// that read back as it, where `{:?}` and zmij may pick different ones (`685488226452659.25`:
/// `.3` and `.2`). That needs an exact decimal expansion of at most 18 significant digits
/// ending in 5, so a fraction: `odd / 2^q` with `odd × 5^q` below 10^18.
fn may_tie(value: f64) -> bool {
    let bits = value.to_bits();
    let biased = ((bits >> 52) & 0x7ff) as i32;
    let fraction = bits & ((1 << 52) - 1);
    let (mantissa, exponent) = match biased {
        0 => (fraction, -1074),
        _ => (fraction | (1 << 52), biased - 1075),
    };
    if mantissa == 0 {
        return false;
    }
    let zeros = mantissa.trailing_zeros();
    let Ok(q) = u32::try_from(-(exponent + zeros as i32)) else {
        return false; // an integer
    };
    (1..26).contains(&q) && u128::from(mantissa >> zeros) * 5u128.pow(q) <= 10u128.pow(18)
}

/// `value` as serde_json writes it (zmij's text; null for NaN and infinities).
fn json_f64(line: &mut String, value: f64) {
    if value.is_finite() {
        line.push_str(zmij::Buffer::new().format_finite(value));
    } else {
        line.push_str("null");
    }
}

/// Writes one JSON line into `line`.
fn json_line(line: &mut String, clock: &mut Clock, event: &Event<'_>) {
    let meta = event.metadata();
    line.push_str("{\"timestamp\":\"");
    clock.write_now(line);
    line.push_str("\",\"level\":\"");
    line.push_str(meta.level().as_str());
    line.push_str("\",\"fields\":{");
    let mut fields = JsonFields { line, first: true };
    event.record(&mut fields);
    line.push_str("},\"target\":");
    json_string(line, meta.target());
    line.push_str("}\n");
}

/// The `fields` object as tracing-serde writes it: strings, numbers and booleans typed, other
/// values as their `Debug` text.
struct JsonFields<'a> {
    line: &'a mut String,
    first: bool,
}

impl JsonFields<'_> {
    fn key(&mut self, field: &Field) {
        if !std::mem::take(&mut self.first) {
            self.line.push(',');
        }
        json_string(self.line, field.name());
        self.line.push(':');
    }
}

impl Visit for JsonFields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.key(field);
        json_string(self.line, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.key(field);
        self.line.push_str(itoa::Buffer::new().format(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.key(field);
        self.line.push_str(if value { "true" } else { "false" });
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        self.key(field);
        json_f64(self.line, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.key(field);
        let from = self.line.len();
        let _ = write!(self.line, "{value:?}");
        if needs_json_escape(&self.line[from..]) {
            let written = self.line.split_off(from);
            json_string(self.line, &written);
        } else {
            self.line.insert(from, '"');
            self.line.push('"');
        }
    }
}

/// `value` as a JSON string, escaped as serde_json escapes it.
fn json_string(line: &mut String, value: &str) {
    if needs_json_escape(value) {
        match serde_json::to_string(value) {
            Ok(text) => line.push_str(&text),
            Err(_) => line.push_str("\"\""),
        }
    } else {
        line.push('"');
        line.push_str(value);
        line.push('"');
    }
}

/// Whether `value` has a character JSON escapes inside a string (a control, `"` or `\\`).
fn needs_json_escape(value: &str) -> bool {
    value.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\')
}

/// The current time as tracing-subscriber writes it (`2026-12-04T13:26:12.123456Z`), the date
/// and time of day computed once per second.
#[derive(Default)]
struct Clock {
    second: Option<u64>,
    /// `YYYY-MM-DDTHH:MM:SS` of `second`.
    prefix: String,
}

impl Clock {
    fn write_now(&mut self, line: &mut String) {
        let Ok(since_epoch) = SystemTime::now().duration_since(UNIX_EPOCH) else {
            // Before 1970: rare enough to let the stock clock write it.
            let _ = tracing_subscriber::fmt::time::SystemTime.format_time(&mut Writer::new(line));
            return;
        };
        let second = since_epoch.as_secs();
        if self.second != Some(second) {
            self.prefix.clear();
            match i64::try_from(second)
                .ok()
                .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
            {
                Some(t) if t.year() <= 9999 => {
                    let _ = write!(
                        self.prefix,
                        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
                        t.year(),
                        u8::from(t.month()),
                        t.day(),
                        t.hour(),
                        t.minute(),
                        t.second()
                    );
                    self.second = Some(second);
                }
                _ => {
                    let _ = tracing_subscriber::fmt::time::SystemTime
                        .format_time(&mut Writer::new(line));
                    self.second = None;
                    return;
                }
            }
        }
        line.push_str(&self.prefix);
        let mut digits = [b'.', b'0', b'0', b'0', b'0', b'0', b'0', b'Z'];
        let mut rest = since_epoch.subsec_micros();
        for d in digits[1..7].iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        line.push_str(std::str::from_utf8(&digits).unwrap_or(".000000Z"));
    }
}

#[cfg(test)]
mod tests;
