//! Every warning the detail page shows about a held call, as lines of text: what the admin API
//! adds to a review (`summary.warnings`) so that a reviewer deciding from `airlock reviews show`
//! reads what one deciding from the dashboard reads (the readings of a parameter read more than
//! one way, keys given twice, a masked echo, a removed agent, a content-encoded body, a body
//! spelled with `\u` escapes, padding). The summary's other parts are the page's Arguments and money line.

use super::{show, views};
use crate::gate::Review;

/// Why a review's agent is not the one configured under its name now
/// (`Admin::sender_gone`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SenderGone {
    /// No agent of that name is configured.
    Removed,
    /// The one configured under that name was added after the review was created: another
    /// agent (the sender was removed, and the name given to a new one).
    Replaced,
}

impl SenderGone {
    /// The warning, unescaped, as its headline (the page sets it in bold) and the rest, for a
    /// review sent by `agent`.
    pub(crate) fn warning(self, agent: &str) -> (String, &'static str) {
        match self {
            SenderGone::Removed => (
                format!("the agent that sent this request, {agent}, is no longer configured"),
                "it was removed after sending it (compromised? retired?); approving still \
                 sends the request as stored",
            ),
            SenderGone::Replaced => (
                format!(
                    "the agent that sent this request, {agent}, was removed: the agent configured \
                     under that name now is another entry (added since) and did not send it"
                ),
                "the sender was removed after sending it (compromised? retired?); approving \
                 still sends the request as stored",
            ),
        }
    }
}

/// The warning lines for review `r` (stored body `body`) summed up as `s`; `gone`: its agent is
/// no longer the one configured under its name. Agent text in them is masked and escaped as on
/// the page.
pub(super) fn lines(
    r: &Review,
    s: &views::Summary,
    body: &[u8],
    gone: Option<SenderGone>,
) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(m) = &r.restored {
        out.push(m.warning.clone());
    }
    if let Some(gone) = gone {
        let (headline, rest) = gone.warning(&show::visible(r.agent.as_deref().unwrap_or("?")));
        out.push(format!("{headline}: {rest}"));
    }
    if !s.masked_echo.is_empty() {
        out.push(format!(
            "a masked value also appears elsewhere: the value of the secret-named query \
             parameter {} shows again in this request (a header, the URL, the body, the \
             parameters or the explanation), as [redacted: same value as …]; the agent chose \
             it, and what it hides may be what matters",
            s.masked_echo.join(", ")
        ));
    }
    if !s.ambiguous.is_empty() {
        out.push(format!(
            "{} read more than one way: servers may act on any of the values shown (summary \
             arguments and money); approving sends the request as stored",
            s.ambiguous.join(", ")
        ));
    }
    if let Some(e) = &s.encoded {
        out.push(format!(
            "the body is content-encoded ({e}): the service decodes it before reading it, so what \
             it reads is not what is shown, and Airlock could not read its fields; approving \
             sends it as stored"
        ));
    }
    if let Some(e) = &s.escapes {
        out.push(format!("{e} (request.bodyDecoded)"));
    }
    if r.sealed_secrets > 0 {
        out.push(format!(
            "{} secret-named value(s) of this request were erased from the record when it \
             became final, and every echo of them: the request shown is what was kept, not byte \
             for byte what was sent",
            r.sealed_secrets
        ));
    }
    if padded(r, body) {
        out.push(
            "the body holds long runs of blanks (padding can push a field out of view): the \
             dashboard shows each run as a marker, [… N blank lines …]"
                .into(),
        );
    }
    out
}

/// Does the stored body show with runs of blanks collapsed ([`show::collapse_blanks`])?
fn padded(r: &Review, body: &[u8]) -> bool {
    if body.is_empty() || views::is_git_push(r) {
        return false;
    }
    let text = show::request_body_text(body, false);
    show::collapse_blanks(&text) != text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warned(r: &Review, gone: Option<SenderGone>) -> Vec<String> {
        let body = r.request.body().expect("body");
        lines(r, &views::sum_up(r, &body), &body, gone)
    }

    /// Review: a CLI-only reviewer read none of the detail page's warnings. Each one the page
    /// shows is a line here.
    #[test]
    fn every_warning_the_detail_page_shows_is_a_line() {
        let padded = format!(
            "{{\"note\":\"ok\",{}\"permission\":\"admin\",\"note\":\"x\",\"r\\u006fle\":\"admin\"}}",
            "\n".repeat(3000)
        );
        let mut r = Review::sample(
            "PUT",
            "api.github.com",
            "/repos/o/r/collaborators/eve?x_token=admin-token-echo",
            None,
            padded.as_bytes(),
        );
        r.agent = Some("bot\u{202E}".into());
        r.explanation = "held: admin-token-echo".into();
        let shown = warned(&r, Some(SenderGone::Removed));
        let want = [
            "the agent that sent this request, bot\\u{202E}, is no longer configured",
            "a masked value also appears elsewhere: the value of the secret-named query parameter x_token",
            "JSON key `note` (given twice, values differ) read more than one way",
            "the JSON body is spelled with \\u escapes",
            "the body holds long runs of blanks",
        ];
        assert_eq!(shown.len(), want.len(), "{shown:#?}");
        for (line, w) in shown.iter().zip(want) {
            assert!(line.starts_with(w), "{w} in {line}");
        }
        let plain = Review::sample("DELETE", "api.github.com", "/repos/o/r", None, b"");
        assert!(warned(&plain, None).is_empty());
        let mut gz = Review::sample("DELETE", "api.github.com", "/repos/o/r", None, b"\x1f\x8b");
        gz.request
            .headers
            .push(("Content-Encoding".into(), "gzip".into()));
        let shown = warned(&gz, None);
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert!(
            shown[0].starts_with("the body is content-encoded (gzip)"),
            "{shown:?}"
        );
    }
}
