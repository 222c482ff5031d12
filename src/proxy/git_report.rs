//! A held git push answered in git's own language: a receive-pack `report-status` that rejects
//! every ref with the review id, so `git push` prints
//! `! [remote rejected] main -> main (held for review rev_…)` instead of "RPC failed; HTTP 423".
//!
//! Only for a client that asked for it: `Accept: application/x-git-receive-pack-result` (what git
//! sends) and the `report-status` (or `-v2`) capability on the first command. Anything else (a
//! raw client, an unreadable command section) keeps the JSON 423. When the client asked for
//! `side-band-64k` (or `side-band`), the report travels in band 1 and a human-readable note with
//! the status URL in band 2 (git prints it as `remote: …`). The answer is 200, as git requires
//! to read a report at all; no client takes it for success, since every ref is `ng` and git
//! exits non-zero. `Airlock-Outcome: ESCALATE` and the review headers stay. The other endings of
//! a push (decided while it waited, not held at all) are reports too: `git_outcome.rs`.

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderMap, HeaderValue, Response, StatusCode};

use crate::rules::git::{read_command_section, MAX_PKT_LEN};
use crate::wire::{full, Body};

/// Content type of a receive-pack answer.
pub const RESULT_TYPE: &str = "application/x-git-receive-pack-result";

/// Largest side-band packet for `side-band` (the 64k variant allows [`MAX_PKT_LEN`]).
const SMALL_SIDEBAND: usize = 1000;

/// What a push asked to hear back: the refs it named and how to frame the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRequest {
    pub refs: Vec<String>,
    /// Largest side-band packet, when the client asked for side-band.
    pub sideband: Option<usize>,
}

impl ReportRequest {
    /// From a push's headers and (whole, raw) body; `None` unless the client reads reports.
    pub fn of(headers: &HeaderMap, body: &[u8]) -> Option<ReportRequest> {
        let accepts = headers.get_all(header::ACCEPT).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.to_ascii_lowercase().contains(RESULT_TYPE))
        });
        if !accepts {
            return None;
        }
        let section = read_command_section(body, headers).ok()?;
        let has = |c: &str| section.capabilities.iter().any(|x| x == c);
        if !(has("report-status") || has("report-status-v2")) || section.commands.is_empty() {
            return None;
        }
        let sideband = if has("side-band-64k") {
            Some(MAX_PKT_LEN)
        } else if has("side-band") {
            Some(SMALL_SIDEBAND)
        } else {
            None
        };
        Some(ReportRequest {
            refs: section.commands.into_iter().map(|c| c.refname).collect(),
            sideband,
        })
    }
}

/// The report for a push that was held: `reason` for every ref, `note` lines for `remote:` (when
/// the client reads side-band). `None` if a line would not fit in a pkt-line (the caller then
/// answers JSON).
pub fn report(req: &ReportRequest, reason: &str, note: &[String]) -> Option<Bytes> {
    let mut status = BytesMut::new();
    // Nothing was unpacked, but `unpack ok` lets git print each ref's reason (an unpack error
    // would come first and read as a broken pack).
    put_pkt(&mut status, b"unpack ok\n")?;
    for r in &req.refs {
        put_pkt(&mut status, format!("ng {r} {reason}\n").as_bytes())?;
    }
    status.put_slice(b"0000");
    let Some(max) = req.sideband else {
        return Some(status.freeze());
    };
    let mut out = BytesMut::new();
    for line in note {
        put_band(&mut out, 2, format!("{line}\n").as_bytes(), max)?;
    }
    put_band(&mut out, 1, &status, max)?;
    out.put_slice(b"0000");
    Some(out.freeze())
}

/// A 200 receive-pack answer carrying `report` (git reads a report only from a 2xx).
pub fn response(report: Bytes) -> Response<Body> {
    let mut resp = Response::new(full(report));
    *resp.status_mut() = StatusCode::OK;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(RESULT_TYPE));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Appends one pkt-line; `None` if `payload` is too long for one.
fn put_pkt(out: &mut BytesMut, payload: &[u8]) -> Option<()> {
    let len = payload.len() + 4;
    if len > MAX_PKT_LEN {
        return None;
    }
    out.put_slice(format!("{len:04x}").as_bytes());
    out.put_slice(payload);
    Some(())
}

/// Appends `data` as side-band packets of `band`, each at most `max` bytes.
fn put_band(out: &mut BytesMut, band: u8, data: &[u8], max: usize) -> Option<()> {
    for chunk in data.chunks(max - 5) {
        let mut payload = Vec::with_capacity(chunk.len() + 1);
        payload.push(band);
        payload.extend_from_slice(chunk);
        put_pkt(out, &payload)?;
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(payload: &str) -> String {
        format!("{:04x}{payload}", payload.len() + 4)
    }

    fn push_headers(accept: bool) -> HeaderMap {
        let mut h = HeaderMap::new();
        if accept {
            h.insert(header::ACCEPT, HeaderValue::from_static(RESULT_TYPE));
        }
        h
    }

    fn body(caps: &str) -> Vec<u8> {
        let (a, z) = ("a".repeat(40), "0".repeat(40));
        format!(
            "{}{}0000PACK",
            pkt(&format!("{a} {z} refs/heads/x\0{caps}")),
            pkt(&format!("{z} {a} refs/heads/y"))
        )
        .into_bytes()
    }

    #[test]
    fn only_a_client_that_reads_reports_gets_one() {
        let got = ReportRequest::of(&push_headers(true), &body("report-status side-band-64k"));
        assert_eq!(
            got,
            Some(ReportRequest {
                refs: vec!["refs/heads/x".into(), "refs/heads/y".into()],
                sideband: Some(MAX_PKT_LEN),
            })
        );
        let small = ReportRequest::of(&push_headers(true), &body("report-status-v2 side-band"));
        assert_eq!(small.and_then(|r| r.sideband), Some(SMALL_SIDEBAND));
        let plain = ReportRequest::of(&push_headers(true), &body("report-status"));
        assert_eq!(plain.map(|r| r.sideband), Some(None));
        // No Accept, no report-status, or an unreadable section: JSON instead.
        assert_eq!(
            ReportRequest::of(&push_headers(false), &body("report-status")),
            None
        );
        assert_eq!(
            ReportRequest::of(&push_headers(true), &body("side-band-64k")),
            None
        );
        assert_eq!(ReportRequest::of(&push_headers(true), b"00zzjunk"), None);
    }

    #[test]
    fn report_without_side_band_is_bare_pkt_lines() {
        let req = ReportRequest {
            refs: vec!["refs/heads/main".into()],
            sideband: None,
        };
        let out = report(&req, "held for review rev_1", &["ignored".into()]).expect("fits");
        let want = format!(
            "{}{}0000",
            pkt("unpack ok\n"),
            pkt("ng refs/heads/main held for review rev_1\n")
        );
        assert_eq!(out.as_ref(), want.as_bytes());
    }

    #[test]
    fn side_band_carries_the_note_in_band_2_and_the_report_in_band_1() {
        let req = ReportRequest {
            refs: vec!["refs/heads/main".into()],
            sideband: Some(MAX_PKT_LEN),
        };
        let out = report(&req, "held for review rev_1", &["see here".into()]).expect("fits");
        let inner = format!(
            "{}{}0000",
            pkt("unpack ok\n"),
            pkt("ng refs/heads/main held for review rev_1\n")
        );
        let want = format!(
            "{}{}0000",
            pkt("\u{2}see here\n"),
            pkt(&format!("\u{1}{inner}"))
        );
        assert_eq!(out.as_ref(), want.as_bytes());
    }

    #[test]
    fn small_side_band_splits_the_report_and_oversized_lines_give_up() {
        let long = format!("refs/heads/{}", "b".repeat(3000));
        let req = ReportRequest {
            refs: vec![long.clone()],
            sideband: Some(SMALL_SIDEBAND),
        };
        let out = report(&req, "held", &[]).expect("fits");
        // Walk the outer packets: all band 1, none over the limit, inner bytes intact.
        let (mut pos, mut inner) = (0, Vec::new());
        loop {
            let len =
                usize::from_str_radix(std::str::from_utf8(&out[pos..pos + 4]).expect("hex"), 16)
                    .expect("len");
            if len == 0 {
                break;
            }
            assert!(len <= SMALL_SIDEBAND);
            assert_eq!(out[pos + 4], 1);
            inner.extend_from_slice(&out[pos + 5..pos + len]);
            pos += len;
        }
        assert_eq!(pos + 4, out.len());
        let want = format!(
            "{}{}0000",
            pkt("unpack ok\n"),
            pkt(&format!("ng {long} held\n"))
        );
        assert_eq!(inner, want.as_bytes());

        let huge = ReportRequest {
            refs: vec!["r".repeat(MAX_PKT_LEN)],
            sideband: None,
        };
        assert_eq!(report(&huge, "held", &[]), None);
    }
}
