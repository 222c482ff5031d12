//! Tests of how a log line is written.

use std::io;
use std::sync::{Arc, Mutex};

use tracing_subscriber::fmt::MakeWriter;

use super::LineFormat;

/// Collects what a subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().expect("lock").clone();
        String::from_utf8(bytes)
            .expect("UTF-8")
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// An error, with a source or without.
#[derive(Debug)]
struct Failure(&'static str, Option<Box<Failure>>);
impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}
impl std::error::Error for Failure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.1.as_deref().map(|e| e as _)
    }
}

/// Every shape of event Airlock writes, and the awkward ones: control characters, quotes,
/// raw identifiers, extreme numbers, errors, spans, every level.
fn emit_all() {
    let method = http::Method::GET;
    let path = String::from("/repos/o/r/pulls");
    tracing::info!(
        target: "airlock::access",
        agent = %"bench",
        host = %"api.github.com",
        method = %method,
        path = %path,
        status = 200u16,
        bytes = 64u64,
        duration_ms = 0.123_456f64,
        verdict = %"pass",
        tool = "github.pulls.list",
        complete = true,
        "request"
    );
    tracing::info!("Airlock running on {}", "127.0.0.1:8080");
    tracing::warn!("bad \x1b[31m red \u{9b} bell\x07 del\x7f ff\x0c bs\x08 é");
    tracing::info!(message = "a str message \x1b[1m", extra = 1i64);
    tracing::error!(tool = "a\"b\\c\nd é \u{1}", r#type = "x", n = -42i64);
    tracing::info!(
        a = f64::NAN,
        b = f64::INFINITY,
        c = 1e-7,
        d = 1e20,
        e = -0.0f64,
        f = 3.0f64
    );
    tracing::info!(big = u128::MAX, small = i128::MIN, flag = false);
    tracing::info!(list = ?vec![1, 2], quoted = ?"q\"x", shown = %"with \"quotes\" and é");
    tracing::info!(a = 1u64);
    tracing::info!("");
    tracing::debug!(target: "airlock::upstream", host = "h", "debug line");
    tracing::trace!(x = 1u64, "trace line");
    let alone = Failure("it \"failed\"\x1b[0m", None);
    tracing::warn!(
        error = &alone as &(dyn std::error::Error + 'static),
        "an error field"
    );
    let inner = Failure("inner \x07", Some(Box::new(Failure("root", None))));
    let outer = Failure("outer", Some(Box::new(inner)));
    tracing::warn!(
        r#err = &outer as &(dyn std::error::Error + 'static),
        "sources"
    );
    tracing::info_span!("span", id = 7u64).in_scope(|| tracing::info!(k = 1u64, "in a span"));
}

fn capture_text(ours: bool) -> Vec<String> {
    let out = Captured::default();
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(out.clone());
    if ours {
        tracing::subscriber::with_default(
            builder.event_format(LineFormat::text()).finish(),
            emit_all,
        );
    } else {
        tracing::subscriber::with_default(builder.finish(), emit_all);
    }
    out.lines()
}

fn capture_json(ours: bool) -> Vec<String> {
    let out = Captured::default();
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .json()
        .with_writer(out.clone());
    if ours {
        tracing::subscriber::with_default(
            builder.event_format(LineFormat::json()).finish(),
            emit_all,
        );
    } else {
        tracing::subscriber::with_default(builder.finish(), emit_all);
    }
    out.lines()
}

/// `2026-12-04T13:26:12.123456Z`
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 27
        && b.iter().enumerate().all(|(i, &c)| match i {
            4 | 7 => c == b'-',
            10 => c == b'T',
            13 | 16 => c == b':',
            19 => c == b'.',
            26 => c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

#[test]
fn text_lines_are_the_stock_formatters_lines() {
    let stock = capture_text(false);
    let ours = capture_text(true);
    assert_eq!(stock.len(), 15, "{stock:#?}");
    assert_eq!(ours.len(), stock.len(), "{ours:#?}");
    for (s, o) in stock.iter().zip(&ours) {
        assert!(is_timestamp(&s[..27]) && is_timestamp(&o[..27]), "{s}\n{o}");
        assert_eq!(&o[27..], &s[27..]);
    }
    // What the cases are for: the access line, and escapes in a message only.
    assert!(ours[0].ends_with(
        " INFO airlock::access: request agent=bench host=api.github.com method=GET \
         path=/repos/o/r/pulls status=200 bytes=64 duration_ms=0.123456 verdict=pass \
         tool=\"github.pulls.list\" complete=true"
    ));
    assert!(
        ours[2].contains("bad \\x1b[31m red \\u{9b} bell\\x07"),
        "{}",
        ours[2]
    );
    assert!(
        ours[13].ends_with("err=outer err.sources=[inner \\x07, root]"),
        "{}",
        ours[13]
    );
}

/// The one place the text differs from the stock format: a control character in any value is
/// escaped, so a value cannot start a line of its own.
#[test]
fn a_value_cannot_forge_a_log_line() {
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(out.clone())
        .event_format(LineFormat::text())
        .finish();
    let forged = "/x\n2026-12-04T00:00:00.000000Z  INFO airlock::access: request verdict=pass";
    let failure = Failure("bad\r\nline", Some(Box::new(Failure("more\n", None))));
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!(path = %forged, tab = %"a\tb", nul = %"\0\x01", "request\nforged");
        tracing::warn!(
            error = &failure as &(dyn std::error::Error + 'static),
            "failed"
        );
    });
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(
        lines[0].ends_with(
            "request\\nforged path=/x\\n2026-12-04T00:00:00.000000Z  INFO airlock::access: \
             request verdict=pass tab=a\tb nul=\\x00\\x01"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].ends_with("failed error=bad\\r\\nline error.sources=[more\\n]"),
        "{}",
        lines[1]
    );
}

#[test]
fn json_lines_are_the_stock_formatters_lines() {
    let stock = capture_json(false);
    let ours = capture_json(true);
    assert_eq!(stock.len(), 15, "{stock:#?}");
    assert_eq!(ours.len(), stock.len(), "{ours:#?}");
    let prefix = "{\"timestamp\":\"".len();
    for (s, o) in stock.iter().zip(&ours) {
        assert!(is_timestamp(&s[prefix..prefix + 27]), "{s}");
        assert!(is_timestamp(&o[prefix..prefix + 27]), "{o}");
        assert_eq!(&o[..prefix], &s[..prefix]);
        assert_eq!(&o[prefix + 27..], &s[prefix + 27..]);
        let v: serde_json::Value = serde_json::from_str(o).expect("JSON");
        assert!(v["fields"].is_object(), "{o}");
    }
}

#[test]
fn the_time_is_the_stock_clocks_time() {
    use tracing_subscriber::fmt::format::Writer;
    use tracing_subscriber::fmt::time::FormatTime;
    let mut clock = super::Clock::default();
    let stock_now = || {
        let mut s = String::new();
        tracing_subscriber::fmt::time::SystemTime
            .format_time(&mut Writer::new(&mut s))
            .expect("time");
        s
    };
    let mut compared = 0;
    for _ in 0..1000 {
        let before = stock_now();
        let mut ours = String::new();
        clock.write_now(&mut ours);
        let after = stock_now();
        assert!(is_timestamp(&ours), "{ours}");
        assert!(before <= ours && ours <= after, "{before} {ours} {after}");
        compared += 1;
    }
    assert_eq!(compared, 1000);
}

/// Floats take a faster path (zmij) where it writes what `{:?}` and serde_json write: every
/// value near the edges of that range, short binary fractions (where two shortest texts can
/// tie) and 400,000 others read the same both ways.
#[test]
fn floats_read_as_the_stock_formatters_write_them() {
    let mut values = vec![
        0.0,
        -0.0,
        f64::NAN,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MAX,
        f64::MIN,
        f64::MIN_POSITIVE,
        f64::EPSILON,
        5e-324,
        0.1,
        0.123456,
        1.0,
        100.0,
        1e15,
        123456789012345.6,
        f64::from_bits(0x4303_7b95_51e2_259a), // 685488226452659.25
        513.0 / 1048576.0,
    ];
    // Short binary fractions, where two shortest texts can tie.
    for q in 1..64 {
        for odd in (1..4096_u32).step_by(2) {
            let value = f64::from(odd) / 2f64.powi(q);
            values.extend([value, -value, value * 2f64.powi(40)]);
        }
    }
    for edge in [1e-5_f64, 1e-4, 1e16, 1e17] {
        let mut below = edge;
        let mut above = edge;
        for _ in 0..50 {
            below = f64::from_bits(below.to_bits() - 1);
            above = f64::from_bits(above.to_bits() + 1);
            values.extend([below, above, -below, -above]);
        }
        values.extend([edge, -edge]);
    }
    // xorshift64: any bit pattern, and magnitudes spread evenly over 1e-6..1e18.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..200_000 {
        values.push(f64::from_bits(next()));
        let exponent = (next() % 24_000) as f64 / 1000.0 - 6.0;
        let sign = if next() % 2 == 0 { 1.0 } else { -1.0 };
        values.push(sign * 10f64.powf(exponent));
    }
    for value in values {
        let mut text = String::new();
        super::debug_f64(&mut text, value);
        assert_eq!(text, format!("{value:?}"), "{:#x}", value.to_bits());
        let mut json = String::new();
        super::json_f64(&mut json, value);
        let serde = serde_json::to_string(&value).unwrap_or_else(|_| "null".to_string());
        assert_eq!(json, serde, "{:#x}", value.to_bits());
    }
}

/// Review of session 20: on a terminal (ANSI on) lines went to the stock formatter, which
/// writes a field's value as it is: a request path with a C1 CSI (`\u{9b}`) or an ESC reached
/// the reviewer's terminal and acted on it. Coloured lines escape every value too.
#[test]
fn a_value_cannot_act_on_a_terminal() {
    let out = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(true)
        .with_writer(out.clone())
        .event_format(LineFormat::text())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        tracing::warn!(path = %"/zen\u{9b}31mX\x1b[2J", "request");
    });
    let lines = out.lines();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].ends_with("request path=/zen\\u{9b}31mX\\x1b[2J"),
        "{:?}",
        lines[0]
    );
    assert!(lines[0].contains("\x1b[33mWARN\x1b[0m"), "{:?}", lines[0]);
}
