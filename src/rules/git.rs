//! Git smart-HTTP pushes (`POST …/git-receive-pack`): the pkt-line parser for a push's command
//! section, the `[git]` rule-file section (protected refs) and the verdict for one push.
//!
//! A push body (protocol v0/v1; protocol v2 has no push):
//! ```text
//! *PKT-LINE("shallow" SP oid)
//! PKT-LINE(old-oid SP new-oid SP refname NUL capabilities)   first command
//! *PKT-LINE(old-oid SP new-oid SP refname)                   (`shallow` lines anywhere, as
//!                                                             git and GitHub accept them)
//! flush-pkt "0000"
//! [push options, flush-pkt] [packfile]                       never read here
//! ```
//! Only the command section is read, at most [`COMMANDS_CAP`] bytes (raw and decoded); a gzip
//! body (`Content-Encoding: gzip`) is inflated on the fly under the same cap. Oids are SHA-1 (40
//! hex) or SHA-256 (64 hex). Whatever cannot be read fully and exactly (bad length prefix,
//! non-hex oid, truncation, oversized line, missing flush-pkt, a signed push's `push-cert`, an
//! unknown content encoding) is a [`PushError`], and the catalog escalates it (fail closed).
//!
//! Verdicts: a ref deletion (new oid all zeros) gets `delete`, creating or updating a protected
//! ref gets `protected` (Airlock cannot tell a force push from a fast-forward without the object
//! graph, so every update of a protected ref counts), and so does a ref outside `refs/heads/`
//! and `refs/tags/` (Gerrit's `refs/for/main%submit` lands on main) or a push asking for push
//! options (GitLab's `merge_request.merge_when_pipeline_succeeds`; never read here); any other
//! push gets `push`. Protected-ref patterns match case-insensitively (over-matching is the safe
//! side). A section that cannot be read still names the commands read before the fault, the
//! most severe first, so a reviewer sees a deletion behind it.

use std::collections::BTreeMap;
use std::io::Write;

use super::{Action, Class, Verdict};

/// Longest pkt-line git sends (LARGE_PACKET_MAX), length prefix included.
pub const MAX_PKT_LEN: usize = 65520;
/// Most bytes of a push body (raw, and again decoded) read to find the command section.
pub const COMMANDS_CAP: usize = 1 << 20;

/// One `<old-oid> <new-oid> <refname>` command (oids lower-case hex).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefUpdate {
    pub old: String,
    pub new: String,
    pub refname: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateKind {
    Create,
    Update,
    Delete,
}

impl RefUpdate {
    pub fn kind(&self) -> UpdateKind {
        if is_zero(&self.new) {
            UpdateKind::Delete
        } else if is_zero(&self.old) {
            UpdateKind::Create
        } else {
            UpdateKind::Update
        }
    }
}

fn is_zero(oid: &str) -> bool {
    oid.bytes().all(|b| b == b'0')
}

/// The command section of a push body.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CommandSection {
    pub commands: Vec<RefUpdate>,
    /// Capabilities after the first command's NUL, e.g. `report-status`, `object-format=sha1`.
    pub capabilities: Vec<String>,
    /// `shallow <oid>` lines (before the commands, or among them).
    pub shallow: Vec<String>,
    /// Bytes of the section, its flush-pkt included.
    pub len: usize,
}

/// Why a push's command section could not be read. Every one of them fails closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PushError {
    #[error("the body ends at byte {0} before the command list's flush-pkt (0000)")]
    Truncated(usize),
    #[error("bad pkt-line length prefix {found:?} at byte {at} (expected 4 hex digits)")]
    BadLength { at: usize, found: String },
    #[error("pkt-line at byte {at} declares {len} bytes (allowed: 0000, or 5 to 65520)")]
    BadSize { at: usize, len: usize },
    #[error("special packet {code:04} at byte {at} inside the command list (only 0000 ends it)")]
    Special { at: usize, code: usize },
    #[error("pkt-line at byte {at}: {why}")]
    BadCommand { at: usize, why: String },
    #[error("signed pushes (push-cert) are not inspected")]
    PushCert,
    #[error("the command list is not complete within {0} bytes")]
    TooLarge(usize),
    #[error("Content-Encoding {0:?} is not supported for pushes (identity or gzip only)")]
    Encoding(String),
    #[error("the gzip body cannot be inflated: {0}")]
    Gzip(String),
}

impl PushError {
    /// Stable reason code for verdicts and the audit log.
    pub fn reason_code(&self) -> &'static str {
        match self {
            PushError::Truncated(_) => "git_commands_incomplete",
            PushError::TooLarge(_) => "git_commands_too_large",
            PushError::PushCert => "git_push_cert",
            PushError::Encoding(_) | PushError::Gzip(_) => "git_body_unreadable",
            PushError::BadLength { .. }
            | PushError::BadSize { .. }
            | PushError::Special { .. }
            | PushError::BadCommand { .. } => "git_pktline_malformed",
        }
    }
}

/// Length of a pkt-line from its 4 hex digits (either case, as git reads them).
fn pkt_len(head: &[u8]) -> Option<usize> {
    head.iter().try_fold(0usize, |acc, &b| {
        let d = (b as char).to_digit(16)?;
        Some(acc * 16 + d as usize)
    })
}

/// Parses the command section at the start of a (decoded) push body. The fuzzing entry point:
/// any input gives `Ok` or a [`PushError`], never a panic. Bytes after the flush-pkt are ignored.
pub fn parse_command_section(input: &[u8]) -> Result<CommandSection, PushError> {
    let mut out = CommandSection::default();
    parse_into(input, &mut out)?;
    Ok(out)
}

/// [`parse_command_section`] into `out`, which keeps what was read when it fails.
fn parse_into(input: &[u8], out: &mut CommandSection) -> Result<(), PushError> {
    let mut hexlen: Option<usize> = None;
    let mut pos = 0;
    loop {
        let Some(head) = input.get(pos..pos + 4) else {
            return Err(PushError::Truncated(input.len()));
        };
        let at = pos;
        let len = pkt_len(head).ok_or_else(|| PushError::BadLength {
            at,
            found: String::from_utf8_lossy(head).into_owned(),
        })?;
        match len {
            0 => {
                out.len = pos + 4;
                break;
            }
            1..=3 => return Err(PushError::Special { at, code: len }),
            4 => return Err(PushError::BadSize { at, len }),
            n if n > MAX_PKT_LEN => return Err(PushError::BadSize { at, len }),
            _ => {}
        }
        let Some(payload) = input.get(pos + 4..pos + len) else {
            return Err(PushError::Truncated(input.len()));
        };
        pos += len;
        let bad = |why: String| PushError::BadCommand { at, why };
        let line = payload.strip_suffix(b"\n").unwrap_or(payload);
        // git's read_head_info and GitHub's receive-pack take `shallow` lines anywhere.
        if let Some(oid) = line.strip_prefix(b"shallow ") {
            out.shallow.push(oid_of(oid, &mut hexlen).map_err(bad)?);
            continue;
        }
        if out.commands.is_empty()
            && line.starts_with(b"push-cert")
            && matches!(line.get(9), None | Some(0) | Some(b' '))
        {
            return Err(PushError::PushCert);
        }
        let (cmd, caps) = match memchr::memchr(0, line) {
            Some(i) => (&line[..i], Some(&line[i + 1..])),
            None => (line, None),
        };
        if let Some(caps) = caps {
            if !out.commands.is_empty() {
                return Err(bad("NUL (capabilities) after the first command".into()));
            }
            let caps =
                std::str::from_utf8(caps).map_err(|_| bad("capabilities are not UTF-8".into()))?;
            out.capabilities = caps
                .split(' ')
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect();
        }
        out.commands.push(command(cmd, &mut hexlen).map_err(bad)?);
    }
    if let Some(format) = out
        .capabilities
        .iter()
        .find_map(|c| c.strip_prefix("object-format="))
    {
        let want = match format {
            "sha1" => 40,
            "sha256" => 64,
            other => {
                return Err(PushError::BadCommand {
                    at: 0,
                    why: format!("unknown object-format {other:?}"),
                })
            }
        };
        if hexlen.is_some_and(|n| n != want) {
            return Err(PushError::BadCommand {
                at: 0,
                why: format!("object ids do not fit object-format={format}"),
            });
        }
    }
    Ok(())
}

/// `<old-oid> <new-oid> <refname>`; every oid of one push has the same length.
fn command(cmd: &[u8], hexlen: &mut Option<usize>) -> Result<RefUpdate, String> {
    let mut parts = cmd.splitn(3, |b| *b == b' ');
    let (Some(old), Some(new), Some(refname)) = (parts.next(), parts.next(), parts.next()) else {
        return Err("expected `<old-oid> <new-oid> <refname>`".into());
    };
    let old = oid_of(old, hexlen)?;
    let new = oid_of(new, hexlen)?;
    let refname = std::str::from_utf8(refname).map_err(|_| "ref name is not UTF-8".to_string())?;
    check_refname(refname)?;
    if is_zero(&old) && is_zero(&new) {
        return Err(format!("{refname}: old and new object ids are both zero"));
    }
    Ok(RefUpdate {
        old,
        new,
        refname: refname.to_string(),
    })
}

fn oid_of(raw: &[u8], hexlen: &mut Option<usize>) -> Result<String, String> {
    let shown = || String::from_utf8_lossy(&raw[..raw.len().min(70)]).into_owned();
    if !matches!(raw.len(), 40 | 64) || !raw.iter().all(u8::is_ascii_hexdigit) {
        return Err(format!(
            "{:?} is not an object id (40 or 64 hex digits)",
            shown()
        ));
    }
    match hexlen {
        Some(n) if *n != raw.len() => {
            return Err(format!(
                "object id {:?} mixes SHA-1 and SHA-256 lengths",
                shown()
            ))
        }
        _ => *hexlen = Some(raw.len()),
    }
    Ok(String::from_utf8_lossy(raw).to_ascii_lowercase())
}

/// The parts of git's `check_refname_format` that matter here; anything else is refused too.
pub fn check_refname(name: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("ref name {name:?} {why}"));
    if !name.starts_with("refs/") {
        return bad("does not start with refs/");
    }
    if name
        .bytes()
        .any(|b| b < 0x20 || b == 0x7f || b" ~^:?*[\\".contains(&b))
    {
        return bad("has a character git forbids");
    }
    if name.contains("..") || name.contains("@{") || name.ends_with('.') {
        return bad("has `..`, `@{` or a trailing `.`");
    }
    if name
        .split('/')
        .any(|c| c.is_empty() || c.starts_with('.') || c.ends_with(".lock"))
    {
        return bad("has an empty, dot-led or .lock component");
    }
    Ok(())
}

// ---- body decoding ----

/// How a push body is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyEncoding {
    Identity,
    Gzip,
}

impl BodyEncoding {
    /// From the request's `Content-Encoding` (absent or `identity`; `gzip` / `x-gzip`).
    pub fn from_headers(headers: &http::HeaderMap) -> Result<BodyEncoding, PushError> {
        let mut values = headers.get_all(http::header::CONTENT_ENCODING).iter();
        let Some(v) = values.next() else {
            return Ok(BodyEncoding::Identity);
        };
        let text = String::from_utf8_lossy(v.as_bytes())
            .trim()
            .to_ascii_lowercase();
        if values.next().is_some() {
            return Err(PushError::Encoding(
                "several Content-Encoding headers".into(),
            ));
        }
        match text.as_str() {
            "" | "identity" => Ok(BodyEncoding::Identity),
            "gzip" | "x-gzip" => Ok(BodyEncoding::Gzip),
            _ => Err(PushError::Encoding(text)),
        }
    }
}

/// A `Vec` that refuses to grow past [`COMMANDS_CAP`] (bounds what a gzip bomb can inflate to).
struct CappedVec {
    buf: Vec<u8>,
    overflowed: bool,
}

impl Write for CappedVec {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > COMMANDS_CAP {
            self.overflowed = true;
            return Err(std::io::Error::other("decoded command list over the cap"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads a push body chunk by chunk until its command section is complete (or cannot be).
pub struct CommandReader {
    gzip: Option<flate2::write::GzDecoder<CappedVec>>,
    plain: CappedVec,
    raw_len: usize,
    /// Offset of the next unscanned pkt-line in the decoded bytes.
    scan: usize,
    stopped: Option<Result<(), PushError>>,
}

impl CommandReader {
    pub fn new(encoding: BodyEncoding) -> CommandReader {
        let sink = || CappedVec {
            buf: Vec::new(),
            overflowed: false,
        };
        CommandReader {
            gzip: (encoding == BodyEncoding::Gzip).then(|| flate2::write::GzDecoder::new(sink())),
            plain: sink(),
            raw_len: 0,
            scan: 0,
            stopped: None,
        }
    }

    /// Feeds raw body bytes. Returns `true` once no more are needed: the section is complete,
    /// malformed, or over the cap.
    pub fn feed(&mut self, raw: &[u8]) -> bool {
        if self.stopped.is_some() {
            return true;
        }
        let take = raw.len().min(COMMANDS_CAP - self.raw_len);
        self.raw_len += take;
        if let Err(e) = self.decode(&raw[..take]) {
            self.stopped = Some(Err(e));
            return true;
        }
        if self.section_ended() {
            self.stopped = Some(Ok(()));
        } else if take < raw.len() || self.raw_len >= COMMANDS_CAP {
            self.stopped = Some(Err(PushError::TooLarge(COMMANDS_CAP)));
        }
        self.stopped.is_some()
    }

    fn decode(&mut self, raw: &[u8]) -> Result<(), PushError> {
        let Some(dec) = self.gzip.as_mut() else {
            return self
                .plain
                .write_all(raw)
                .map_err(|_| PushError::TooLarge(COMMANDS_CAP));
        };
        // flush() hands over everything inflated so far (the decoder buffers otherwise).
        match dec.write_all(raw).and_then(|()| dec.flush()) {
            Ok(()) => Ok(()),
            Err(_) if dec.get_ref().overflowed => Err(PushError::TooLarge(COMMANDS_CAP)),
            Err(e) => Err(PushError::Gzip(e.to_string())),
        }
    }

    fn decoded(&self) -> &[u8] {
        match &self.gzip {
            Some(d) => &d.get_ref().buf,
            None => &self.plain.buf,
        }
    }

    /// Walks whole pkt-lines from `scan`: true at a flush-pkt or a length the parser refuses.
    fn section_ended(&mut self) -> bool {
        let data = match &self.gzip {
            Some(d) => &d.get_ref().buf,
            None => &self.plain.buf,
        };
        while let Some(head) = data.get(self.scan..self.scan + 4) {
            match pkt_len(head) {
                Some(n) if (5..=MAX_PKT_LEN).contains(&n) => {
                    if data.len() < self.scan + n {
                        return false;
                    }
                    self.scan += n;
                }
                _ => return true, // flush-pkt, or something parse_command_section reports
            }
        }
        false
    }

    /// The command section, or why it could not be read (truncated when the body ended early)
    /// with the commands read before the fault.
    pub fn finish(&self) -> Result<CommandSection, (PushError, Vec<RefUpdate>)> {
        let mut out = CommandSection::default();
        let parsed = parse_into(self.decoded(), &mut out);
        match (&self.stopped, parsed) {
            (Some(Err(e)), _) => Err((e.clone(), out.commands)),
            (_, Err(e)) => Err((e, out.commands)),
            (_, Ok(())) => Ok(out),
        }
    }
}

/// Reads the command section from a whole (or leading part of a) raw push body; when it
/// cannot be read, why, with the commands read before the fault.
pub fn read_command_section(
    raw: &[u8],
    headers: &http::HeaderMap,
) -> Result<CommandSection, (PushError, Vec<RefUpdate>)> {
    let encoding = BodyEncoding::from_headers(headers).map_err(|e| (e, Vec::new()))?;
    let mut reader = CommandReader::new(encoding);
    reader.feed(raw);
    reader.finish()
}

// ---- rules ----

/// A protected-ref pattern: exact (`refs/heads/main`), every ref starting with a prefix
/// (`refs/tags/*`, `refs/heads/release-*`), or a whole name with `{N}` standing for a run of
/// ASCII digits (`refs/heads/{N}.x`, `refs/heads/{N}.{N}.x`: semantic-release's maintenance
/// branches `1.x`, `1.2.x`). Matched case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefPattern {
    Exact(String),
    Under(String),
    /// The literal texts around each `{N}` (one more than the `{N}`s), in order.
    Digits(Vec<String>),
}

/// In a protected-ref pattern, one or more ASCII digits.
const DIGITS: &str = "{N}";

impl RefPattern {
    pub fn parse(p: &str) -> Result<RefPattern, String> {
        if p.contains(DIGITS) {
            return Self::parse_digits(p);
        }
        if let Some(prefix) = p.strip_suffix("/*") {
            if prefix != "refs" {
                check_refname(prefix)?;
            }
            return Ok(RefPattern::Under(format!("{prefix}/")));
        }
        // `refs/heads/release-please--*`: every ref whose name starts so.
        if let Some(start) = p.strip_suffix('*') {
            if !start.contains('*') && !start.ends_with('/') {
                check_refname(&format!("{start}x"))?;
                return Ok(RefPattern::Under(start.to_string()));
            }
        }
        if p.contains('*') {
            return Err(format!(
                "protected ref {p:?}: `*` may only end the pattern (refs/tags/*, refs/heads/release-*)"
            ));
        }
        if p.contains(['{', '}']) {
            return Err(format!(
                "protected ref {p:?}: the only placeholder is {DIGITS} (digits: refs/heads/{DIGITS}.x)"
            ));
        }
        check_refname(p)?;
        Ok(RefPattern::Exact(p.to_string()))
    }

    /// A `{N}` pattern: no `*` or other braces, no digit next to a `{N}` (so a run of digits
    /// is read one way), and a valid ref name with each `{N}` as `0`.
    fn parse_digits(p: &str) -> Result<RefPattern, String> {
        let parts: Vec<String> = p.split(DIGITS).map(str::to_string).collect();
        let bad = |why: &str| Err(format!("protected ref {p:?}: {why}"));
        if parts.iter().any(|s| s.contains(['*', '{', '}'])) {
            return bad("a {N} pattern has no `*` and no other placeholder");
        }
        let last = parts.len() - 1;
        let digit_beside = parts.iter().enumerate().any(|(i, s)| {
            (i > 0 && s.starts_with(|c: char| c.is_ascii_digit()))
                || (i < last && s.ends_with(|c: char| c.is_ascii_digit()))
        });
        if digit_beside || parts[1..last].iter().any(String::is_empty) {
            return bad("a {N} stands between text that is not a digit (write {N}.{N}.x, not {N}{N} or 1{N})");
        }
        check_refname(&parts.join("0"))?;
        Ok(RefPattern::Digits(parts))
    }

    pub fn matches(&self, refname: &str) -> bool {
        let r = refname.as_bytes();
        match self {
            RefPattern::Exact(p) => r.eq_ignore_ascii_case(p.as_bytes()),
            RefPattern::Under(p) => {
                let p = p.as_bytes();
                r.len() > p.len() && r[..p.len()].eq_ignore_ascii_case(p)
            }
            RefPattern::Digits(parts) => {
                let mut rest = r;
                for (i, part) in parts.iter().enumerate() {
                    if i > 0 {
                        // A `{N}`: every digit there (the next text starts with none).
                        let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
                        if n == 0 {
                            return false;
                        }
                        rest = &rest[n..];
                    }
                    let part = part.as_bytes();
                    if rest.len() < part.len() || !rest[..part.len()].eq_ignore_ascii_case(part) {
                        return false;
                    }
                    rest = &rest[part.len()..];
                }
                rest.is_empty()
            }
        }
    }
}

/// A service's compiled `[git]` section.
#[derive(Debug, Clone)]
pub struct GitRules {
    /// `file:line` of the section, as verdicts name it.
    pub id: String,
    /// Hosts serving git smart HTTP for the service (e.g. `github.com`).
    pub hosts: Vec<String>,
    pub protected: Vec<RefPattern>,
    /// Action for a ref deletion.
    pub delete: Action,
    /// Action for creating or updating a protected ref.
    pub protected_action: Action,
    /// Action for any other push.
    pub push: Action,
}

/// What a request to a git host is, by method and (normalised) path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitRequest {
    /// `GET …/info/refs?service=git-upload-pack|git-receive-pack`: the ref advertisement.
    InfoRefs,
    /// `POST …/git-upload-pack`: fetch or clone.
    UploadPack,
    /// `POST …/git-receive-pack`: a push.
    ReceivePack,
    /// Anything else on the host: the service default applies.
    Other,
}

impl GitRequest {
    pub fn of<S: AsRef<str>>(method: &str, segs: &[S], query: &str) -> GitRequest {
        let ends_info_refs = matches!(segs, [.., a, b]
            if a.as_ref().eq_ignore_ascii_case("info") && b.as_ref().eq_ignore_ascii_case("refs"));
        let last_is = |s: &str| {
            segs.last()
                .is_some_and(|l| l.as_ref().eq_ignore_ascii_case(s))
        };
        match method {
            "POST" if last_is("git-receive-pack") => GitRequest::ReceivePack,
            "POST" if last_is("git-upload-pack") => GitRequest::UploadPack,
            "GET" | "HEAD"
                if ends_info_refs
                    && form_urlencoded::parse(query.as_bytes()).any(|(k, v)| {
                        k == "service" && (v == "git-upload-pack" || v == "git-receive-pack")
                    }) =>
            {
                GitRequest::InfoRefs
            }
            _ => GitRequest::Other,
        }
    }
}

/// `owner` and `repo` (without `.git`) from `/{owner}/{repo}(.git)/…`, when the path has them.
fn repo_params<S: AsRef<str>>(segs: &[S], params: &mut BTreeMap<String, String>) {
    if let [owner, repo, ..] = segs {
        let repo = repo.as_ref();
        params.insert("owner".into(), owner.as_ref().to_string());
        params.insert(
            "repo".into(),
            repo.strip_suffix(".git").unwrap_or(repo).to_string(),
        );
    }
}

/// Plain (unprotected, non-deleting) commands are named in a verdict's `refs` parameter only
/// while it holds fewer than this many; deletions and protected refs come first, and all of
/// them are named up to [`SHOWN_GATED`], so a decoy cannot push a deletion out of view.
const SHOWN_COMMANDS: usize = 20;
const SHOWN_GATED: usize = 500;

impl GitRules {
    pub fn is_protected(&self, refname: &str) -> bool {
        self.protected.iter().any(|p| p.matches(refname))
    }

    fn verdict(&self, service: &str, action: Action, tool: &str, codes: Vec<String>) -> Verdict {
        Verdict {
            action,
            rule_id: Some(self.id.clone()),
            service: Some(service.to_string()),
            tool: Some(format!("{service}.git.{tool}")),
            class: None,
            reason_codes: codes,
            explanation: String::new(),
            params: BTreeMap::new(),
            expiry: None,
            wait: None,
            approval: None,
            spend_usd: None,
            also_tools: Vec::new(),
        }
    }

    /// The verdict for a request to one of this service's git hosts (`default` for non-git
    /// paths). `body` is the raw push body, or its leading part holding the command section.
    pub fn evaluate<S: AsRef<str>>(
        &self,
        service: &str,
        default: Action,
        req: GitRequest,
        segs: &[S],
        headers: &http::HeaderMap,
        body: Option<&[u8]>,
    ) -> Verdict {
        let mut v = match req {
            GitRequest::InfoRefs | GitRequest::UploadPack => {
                let tool = if req == GitRequest::InfoRefs {
                    "info-refs"
                } else {
                    "fetch"
                };
                let mut v = self.verdict(service, Action::Allow, tool, vec!["git_read".into()]);
                v.explanation = format!("git {tool} (read)");
                v
            }
            GitRequest::Other => {
                let mut v = self.verdict(service, default, "other", vec!["no_rule_default".into()]);
                v.rule_id = None;
                v.tool = None;
                v.explanation = format!("not a git smart-HTTP call; {service} default");
                v
            }
            GitRequest::ReceivePack => {
                let section = match body {
                    None => Err((PushError::Truncated(0), Vec::new())),
                    Some(b) => read_command_section(b, headers),
                };
                match section {
                    Ok(s) => self.push_verdict(service, &s),
                    Err((e, read)) => {
                        // Held whatever was read; named by the commands read before the fault,
                        // so a deletion behind it shows.
                        let partial = CommandSection {
                            commands: read,
                            ..Default::default()
                        };
                        let mut v = self.push_verdict(service, &partial);
                        // Never softer than held (a `block` for what was read stays), and
                        // never called reversible: the unread part may hold anything.
                        v.action = v.action.max(Action::Escalate);
                        v.class = Some(Class::Irreversible);
                        v.reason_codes.insert(0, e.reason_code().to_string());
                        v.reason_codes.retain(|c| c != "git_no_commands");
                        v.explanation = match v.params.get("refs") {
                            Some(refs) if !partial.commands.is_empty() => format!(
                                "fail closed: git push: {e}; commands read before it: {refs}"
                            ),
                            _ => format!("fail closed: git push: {e}"),
                        };
                        v
                    }
                }
            }
        };
        repo_params(segs, &mut v.params);
        v
    }

    /// Weighs every command of a push; the most severe decides (deletion before protected ref
    /// before plain push among equals).
    pub fn push_verdict(&self, service: &str, section: &CommandSection) -> Verdict {
        // (action, rank among equals, tool, class, reason code)
        let mut best = (self.push, 0, "push", Class::Reversible, "git_no_commands");
        let mut codes: Vec<&str> = Vec::new();
        // (rank: protected deletion 3, deletion 2, protected ref 1, other 0; the line)
        let mut named: Vec<(u8, String)> = Vec::with_capacity(section.commands.len());
        // Push options are not read (GitLab acts on them: merge when the pipeline succeeds).
        let options = section.capabilities.iter().any(|c| c == "push-options");
        for c in &section.commands {
            let listed = self.is_protected(&c.refname);
            let outside =
                !(c.refname.starts_with("refs/heads/") || c.refname.starts_with("refs/tags/"));
            let protected = listed || outside || options;
            for (yes, code) in [(outside, "git_ref_unusual"), (options, "git_push_options")] {
                if yes && !codes.contains(&code) {
                    codes.push(code);
                }
            }
            let kind = c.kind();
            let this = match (kind, protected) {
                (UpdateKind::Delete, p) => (
                    if p {
                        self.delete.max(self.protected_action)
                    } else {
                        self.delete
                    },
                    2,
                    "delete-ref",
                    Class::Irreversible,
                    "git_ref_delete",
                ),
                (_, true) => (
                    self.protected_action,
                    1,
                    "push-protected-ref",
                    Class::Irreversible,
                    "git_protected_ref",
                ),
                (_, false) => (self.push, 0, "push", Class::Reversible, "git_push"),
            };
            if !codes.contains(&this.4) {
                codes.push(this.4);
            }
            if protected && kind == UpdateKind::Delete && !codes.contains(&"git_protected_ref") {
                codes.push("git_protected_ref");
            }
            if (this.0, this.1) > (best.0, best.1) || best.4 == "git_no_commands" {
                best = this;
            }
            let verb = match kind {
                UpdateKind::Create => "create",
                UpdateKind::Update => "update",
                UpdateKind::Delete => "delete",
            };
            let mark = if listed {
                " (protected)"
            } else if outside {
                " (outside refs/heads/ and refs/tags/)"
            } else if options {
                " (push options unread)"
            } else {
                ""
            };
            let rank = match (kind, protected) {
                (UpdateKind::Delete, true) => 3,
                (UpdateKind::Delete, false) => 2,
                (_, true) => 1,
                (_, false) => 0,
            };
            named.push((rank, format!("{verb} {}{mark}", c.refname)));
        }
        // The most severe first (stable: in push order among equals).
        named.sort_by_key(|(rank, _)| std::cmp::Reverse(*rank));
        let mut shown = Vec::new();
        let (mut hidden, mut hidden_gated) = (0usize, 0usize);
        for (rank, line) in named {
            let room = if rank > 0 {
                shown.len() < SHOWN_GATED
            } else {
                shown.len() < SHOWN_COMMANDS
            };
            if room {
                shown.push(line);
            } else {
                hidden += 1;
                hidden_gated += usize::from(rank > 0);
            }
        }
        if codes.is_empty() {
            codes.push("git_no_commands");
        }
        codes.sort_by_key(|c| match *c {
            "git_ref_delete" => 0,
            "git_protected_ref" => 1,
            _ => 2,
        });
        let (action, _, tool, class, _) = best;
        let mut v = self.verdict(
            service,
            action,
            tool,
            codes.iter().map(|c| c.to_string()).collect(),
        );
        v.class = Some(class);
        let mut list = shown.join(", ");
        if hidden > 0 {
            list.push_str(&format!(", … {hidden} more"));
            if hidden_gated > 0 {
                list.push_str(&format!(
                    " ({hidden_gated} of them deletions or protected refs)"
                ));
            } else {
                list.push_str(" (none a deletion or a protected ref)");
            }
        }
        v.explanation = if list.is_empty() {
            format!("git push with no ref updates ({})", self.id)
        } else {
            format!("git push ({}): {list}", self.id)
        };
        if !list.is_empty() {
            v.params.insert("refs".into(), list);
        }
        v
    }
}

#[cfg(test)]
mod tests;
