//! What COMMAND writes to its pty reaches the caller's real terminal, so the sandbox could
//! use terminal control strings against the caller: OSC 52 writes the caller's clipboard (a
//! command pasted later) or asks the terminal to send the clipboard back into the sandbox;
//! iTerm2's OSC 1337 writes files; DCS strings reach terminal features (and through tmux, the
//! outer terminal). [`TermFilter`] passes text, plain controls and CSI sequences (cursor,
//! colours) unchanged, keeps the OSC strings that set a window title (0, 1, 2) or colours (4,
//! 10-19, 104, 110-119), and drops every other OSC string and every DCS, SOS, PM and APC
//! string whole, in their 7-bit (`ESC ]`) and UTF-8 C1 (`U+009D`) forms. A string split
//! across reads is judged as a whole. Raw 8-bit C1 bytes (0x80-0x9F outside UTF-8) act only on
//! a terminal that reads single bytes: for a caller with an ISO 8859 locale they are dropped.
//! An ESC followed by a C1 control is judged as that control (the terminal cancels the ESC).
//! Questions to the terminal, whose replies it types into its input (where they can outlive
//! COMMAND and reach the caller's shell), are dropped: the CSI reports, `ESC Z`, ENQ and colour
//! queries that `term_queries.rs` lists (a CSI sequence is held until its final byte, a kept
//! colour OSC string until its end). What passed is also read by [`TermModes`], to switch off
//! at the end what COMMAND left on.

use super::term_modes::TermModes;
use super::term_queries::{csi_asks, osc_asks};

/// OSC numbers passed through: window titles and colours.
fn osc_kept(number: &[u8]) -> bool {
    let Some(n) = std::str::from_utf8(number)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
    else {
        return false;
    };
    matches!(n, 0..=2 | 4 | 10..=19 | 104 | 110..=119)
}

/// The longest OSC number read before the string is judged (more: dropped).
const MOST_NUMBER: usize = 8;

/// Colour OSC strings may be queries (`OSC 11;?`): held whole to be judged, up to this many
/// bytes (longer: dropped).
const MOST_HELD: usize = 512;

/// The longest CSI sequence held before its final byte (longer: dropped whole).
const MOST_CSI: usize = 64;

/// OSC numbers whose strings may ask for a reply (colours): held and judged whole.
fn osc_may_ask(number: &[u8]) -> bool {
    std::str::from_utf8(number)
        .ok()
        .and_then(|s| s.parse::<u32>().ok())
        .is_some_and(|n| matches!(n, 4 | 10..=19))
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum State {
    #[default]
    Ground,
    /// After ESC.
    Esc,
    /// After a UTF-8 lead byte 0xC2 (a C1 control may follow).
    C2,
    /// In an OSC string, reading its number (introducer and digits kept in `pending`).
    OscNumber,
    /// In a CSI sequence (introducer, parameters and intermediates kept in `pending`);
    /// `drop`: too long, dropped up to its final byte.
    Csi { drop: bool },
    /// In a string: passed through (a kept OSC) or dropped.
    Str { keep: bool },
    /// In a string, after ESC (ESC \ ends it; any other escape ends it and starts anew).
    StrEsc { keep: bool },
    /// In a string, after 0xC2 (C2 9C, the C1 ST, ends it; another C1 control ends it too).
    StrC2 { keep: bool },
}

/// The filter's state between reads.
#[derive(Debug, Default)]
pub struct TermFilter {
    state: State,
    /// The OSC's introducer as written (`ESC ]` or `C2 9D`) and its number so far.
    pending: Vec<u8>,
    /// A kept colour OSC string so far: passed once it ends and is no query.
    held: Option<Vec<u8>>,
    /// The held string outgrew [`MOST_HELD`]: dropped when it ends.
    overflow: bool,
    /// The terminal reads bytes, not UTF-8: raw C1 bytes are controls there, and dropped.
    eight_bit: bool,
    /// What the passed output left on.
    modes: TermModes,
}

impl TermFilter {
    /// A filter for a terminal that reads UTF-8 (`eight_bit` false) or single bytes.
    pub fn new(eight_bit: bool) -> TermFilter {
        TermFilter {
            eight_bit,
            ..TermFilter::default()
        }
    }

    /// Appends to `out` what of `input` may reach the caller's terminal.
    pub fn filter(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        for &b in input {
            self.step(b, out);
        }
        self.modes.observe(&out[start..]);
    }

    /// What switches off the modes the passed output left on (empty if it passed no escape).
    pub fn restore(&self) -> Vec<u8> {
        self.modes.restore()
    }

    fn step(&mut self, b: u8, out: &mut Vec<u8>) {
        match self.state {
            State::Ground => match b {
                0x1b => self.state = State::Esc,
                0xc2 => self.state = State::C2,
                // ENQ: the terminal types its answerback message.
                0x05 => {}
                0x80..=0x9f if self.eight_bit => {}
                _ => out.push(b),
            },
            State::Esc => match b {
                b']' => self.start_osc(b"\x1b]"),
                b'[' => self.start_csi(b"\x1b["),
                // DECID: answered as device attributes.
                b'Z' => self.state = State::Ground,
                b'P' | b'X' | b'^' | b'_' => self.state = State::Str { keep: false },
                // A second ESC cancels the first; a bare ST outside a string does nothing.
                0x1b => {}
                // ENQ acts inside a sequence too (the terminal types its answerback).
                0x05 => {}
                b'\\' => self.state = State::Ground,
                // A C1 control cancels the ESC and acts itself (`ESC C2 9D` starts an OSC, and so
                // does `ESC 9D` on an 8-bit terminal): the ESC is dropped, the byte judged anew.
                0xc2 | 0x80..=0x9f => {
                    self.state = State::Ground;
                    self.step(b, out);
                }
                _ => {
                    out.extend_from_slice(&[0x1b, b]);
                    self.state = State::Ground;
                }
            },
            State::C2 => match b {
                0x9d => self.start_osc(&[0xc2, 0x9d]),
                0x9b => self.start_csi(&[0xc2, 0x9b]),
                // C1 DECID: answered as device attributes.
                0x9a => self.state = State::Ground,
                0x90 | 0x98 | 0x9e | 0x9f => self.state = State::Str { keep: false },
                _ => {
                    out.push(0xc2);
                    self.state = State::Ground;
                    self.step(b, out);
                }
            },
            State::OscNumber => match b {
                b'0'..=b'9' if self.pending.len() < MOST_NUMBER + 2 => self.pending.push(b),
                // Terminals read the whole number (`00000000052` is 52): one longer than the
                // filter reads is dropped, never judged by its first digits.
                b'0'..=b'9' => {
                    self.pending.clear();
                    self.state = State::Str { keep: false };
                }
                _ => {
                    let keep = osc_kept(&self.pending[2..]);
                    if keep && osc_may_ask(&self.pending[2..]) {
                        self.held = Some(Vec::new());
                    }
                    if keep {
                        let pending = std::mem::take(&mut self.pending);
                        self.emit(&pending, out);
                    }
                    self.pending.clear();
                    self.state = State::Str { keep };
                    self.step(b, out);
                }
            },
            State::Csi { drop } => match b {
                // Parameters and intermediates.
                0x20..=0x3f | 0x7f if drop => {}
                0x20..=0x3f | 0x7f if self.pending.len() < MOST_CSI => self.pending.push(b),
                0x20..=0x3f | 0x7f => {
                    self.pending.clear();
                    self.state = State::Csi { drop: true };
                }
                // The final byte: the sequence is judged whole.
                0x40..=0x7e => {
                    let params = self.pending.get(2..).unwrap_or_default();
                    if !drop && !csi_asks(params, b) {
                        out.extend_from_slice(&self.pending);
                        out.push(b);
                    }
                    self.pending.clear();
                    self.state = State::Ground;
                }
                // ESC, CAN and SUB cancel the sequence (then act themselves).
                0x1b | 0x18 | 0x1a => {
                    self.pending.clear();
                    self.state = State::Ground;
                    self.step(b, out);
                }
                // Other controls act inside a sequence, which goes on.
                0x00..=0x1f => {
                    if b != 0x05 {
                        out.push(b);
                    }
                }
                // Anything else ends it, unfinished (the terminal drops it), and is read anew.
                _ => {
                    self.pending.clear();
                    self.state = State::Ground;
                    self.step(b, out);
                }
            },
            State::Str { keep } => match b {
                // BEL ends it; CAN and SUB cancel it (the terminal returns to ground).
                0x07 | 0x18 | 0x1a => {
                    if keep {
                        self.emit(&[b], out);
                        self.close(out);
                    }
                    self.state = State::Ground;
                }
                0x1b => self.state = State::StrEsc { keep },
                0xc2 => self.state = State::StrC2 { keep },
                // An 8-bit terminal would end the string here (ST, or a new one).
                0x80..=0x9f if self.eight_bit => {}
                _ => {
                    if keep {
                        self.emit(&[b], out);
                    }
                }
            },
            State::StrEsc { keep } => {
                if b == b'\\' {
                    if keep {
                        self.emit(b"\x1b\\", out);
                        self.close(out);
                    }
                    self.state = State::Ground;
                } else {
                    // The terminal ends the string at this escape; a kept one is closed
                    // explicitly, then the escape is read afresh.
                    self.end_string(keep, out);
                    self.state = State::Esc;
                    self.step(b, out);
                }
            }
            State::StrC2 { keep } => match b {
                0x80..=0x9f => {
                    self.end_string(keep, out);
                    if b == 0x9c {
                        self.state = State::Ground;
                    } else {
                        self.state = State::C2;
                        self.step(b, out);
                    }
                }
                _ => {
                    if keep {
                        self.emit(&[0xc2], out);
                    }
                    self.state = State::Str { keep };
                    self.step(b, out);
                }
            },
        }
    }

    fn start_osc(&mut self, introducer: &[u8]) {
        self.pending.clear();
        self.pending.extend_from_slice(introducer);
        self.state = State::OscNumber;
    }

    fn start_csi(&mut self, introducer: &[u8]) {
        self.pending.clear();
        self.pending.extend_from_slice(introducer);
        self.state = State::Csi { drop: false };
    }

    /// Passes bytes of a kept string: held while it is a colour string being judged.
    fn emit(&mut self, bytes: &[u8], out: &mut Vec<u8>) {
        match &mut self.held {
            // Too long to judge: dropped whole, its end included.
            Some(_) if self.overflow => {}
            Some(held) if held.len() + bytes.len() > MOST_HELD => {
                held.clear();
                self.overflow = true;
            }
            Some(held) => held.extend_from_slice(bytes),
            None => out.extend_from_slice(bytes),
        }
    }

    /// A kept string ended: a held one passes unless it is a query.
    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(held) = self.held.take() {
            if !std::mem::take(&mut self.overflow) && !osc_asks(&held) {
                out.extend_from_slice(&held);
            }
        }
    }

    /// Ends a string the filter passed on with BEL, so the terminal ends it where the filter
    /// does.
    fn end_string(&mut self, keep: bool, out: &mut Vec<u8>) {
        if keep {
            self.emit(&[0x07], out);
            self.close(out);
        }
        self.state = State::Ground;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<u8> {
        run_for(false, chunks)
    }

    fn run_for(eight_bit: bool, chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = TermFilter::new(eight_bit);
        let mut out = Vec::new();
        for c in chunks {
            f.filter(c, &mut out);
        }
        out
    }

    /// (what COMMAND writes, what reaches the caller's terminal)
    #[test]
    fn control_strings_that_act_on_the_caller_are_dropped() {
        let cases: &[(&[u8], &[u8])] = &[
            (b"plain text\r\n", b"plain text\r\n"),
            (b"\x1b[1;31mred\x1b[0m", b"\x1b[1;31mred\x1b[0m"),
            (b"\x1b]0;my title\x07after", b"\x1b]0;my title\x07after"),
            (b"\x1b]2;t\x1b\\after", b"\x1b]2;t\x1b\\after"),
            (b"\x1b]11;#000000\x07", b"\x1b]11;#000000\x07"),
            // Clipboard write and read.
            (b"a\x1b]52;c;ZWNobyBwd25lZA==\x07b", b"ab"),
            (b"a\x1b]52;c;?\x1b\\b", b"ab"),
            // iTerm2 file transfer, hyperlinks, notifications, unknown numbers.
            (b"\x1b]1337;File=name=eA==:eA==\x07z", b"z"),
            (b"\x1b]8;;https://evil.example\x07x\x1b]8;;\x07", b"x"),
            (b"\x1b]777;notify;t;b\x07", b""),
            (b"\x1b]99999999999;x\x07y", b"y"),
            // Zero-padded numbers: read by value, as terminals do; past the filter's 8 digits,
            // dropped (`00000000052` was judged as 0, a title, and passed as OSC 52).
            (b"\x1b]00000000052;c;aGVsbG8=\x07B", b"B"),
            (b"\x1b]000000008;;http://evil.example/\x07x", b"x"),
            (b"\x1b]0000052;c;eA==\x07B", b"B"),
            (b"\x1b]0000002;t\x07B", b"\x1b]0000002;t\x07B"),
            (b"\x1b];no number\x07y", b"y"),
            // DCS (tmux passthrough), SOS, PM, APC.
            (b"\x1bPtmux;\x1b\x1b]52;c;eA==\x07\x1b\\k", b"k"),
            // CAN ends a title string in the terminal: what follows is judged afresh.
            (b"\x1b]0;t\x18\xc2\x9d52;c;eA==\x07k", b"\x1b]0;t\x18k"),
            (b"\x1b]0;t\xc2\x9d52;c;eA==\x07k", b"\x1b]0;t\x07k"),
            (b"\x1b]0;t\x1b]52;c;eA==\x07k", b"\x1b]0;t\x07k"),
            (
                b"\x1b]0;caf\xc3\xa9 \xc2\xa9\x07",
                b"\x1b]0;caf\xc3\xa9 \xc2\xa9\x07",
            ),
            (b"\x1bX sos \x1b\\\x1b^pm\x1b\\\x1b_Gapc\x1b\\k", b"k"),
            // The UTF-8 C1 forms.
            (b"\xc2\x9d52;c;eA==\xc2\x9ck", b"k"),
            (b"\xc2\x9d52;c;eA==\x07k", b"k"),
            (b"\xc2\x90dcs\x1b\\k", b"k"),
            ("é ü ©".as_bytes(), "é ü ©".as_bytes()),
            // An escape inside a dropped string ends it and starts anew.
            (b"\x1b]52;c;x\x1b[31mred", b"\x1b[31mred"),
            // ESC followed by a C1 control: the control acts, the ESC is cancelled.
            (b"\x1b\xc2\x9d52;c;eA==\x07k", b"k"),
            (b"\x1b\xc2\x90dcs\x1b\\k", b"k"),
            (b"\x1b]0;t\x1b\xc2\x9d52;c;eA==\x07k", b"\x1b]0;t\x07k"),
            (b"\x1b\x1b[0m", b"\x1b[0m"),
            // Questions the terminal answers by typing into the input (a reply can reach the
            // caller's shell once COMMAND is gone): device status, cursor position, device
            // attributes, window reports, versions, modes, the answerback, colour queries.
            (b"a\x1b[6nb", b"ab"),
            // Review of session 18: ENQ inside an escape, C1 DECID, DEL before a marker.
            (b"a\x1b\x05b", b"a\x1bb"),
            (b"a\x1b]0;t\x1b\x05b", b"a\x1b]0;t\x07\x1bb"),
            (b"a\xc2\x9ab", b"ab"),
            (b"a\x1b[\x7f>qb", b"ab"),
            (b"a\x1b[\x7f?ub", b"ab"),
            (b"a\x1b[5nb", b"ab"),
            (b"a\x1b[?6nb", b"ab"),
            (b"a\x1b[cb", b"ab"),
            (b"a\x1b[0cb", b"ab"),
            (b"a\x1b[>cb", b"ab"),
            (b"a\x1b[=cb", b"ab"),
            (b"a\x1bZb", b"ab"),
            (b"a\x1b[14tb", b"ab"),
            (b"a\x1b[21tb", b"ab"),
            (b"a\x1b[18;0;0tb", b"ab"),
            (b"a\x1b[1xb", b"ab"),
            (b"a\x1b[?25$pb", b"ab"),
            (b"a\x1b[>qb", b"ab"),
            (b"a\x1b[?ub", b"ab"),
            (b"a\x05b", b"ab"),
            (b"a\xc2\x9b6nb", b"ab"),
            (b"a\x1b]11;?\x07b", b"ab"),
            (b"a\x1b]10;?\x1b\\b", b"ab"),
            (b"a\x1b]4;1;?\x07b", b"ab"),
            (b"a\xc2\x9d11;?\xc2\x9cb", b"ab"),
            // Padded past what the filter holds: dropped, never passed unjudged.
            (
                b"a\x1b[00000000000000000000000000000000000000000000000000000000000000000006nb",
                b"ab",
            ),
            // Not questions: passed, whole.
            (
                b"\x1b[2J\x1b[1;1H\x1b[?25l\x1b[?1049h",
                b"\x1b[2J\x1b[1;1H\x1b[?25l\x1b[?1049h",
            ),
            (b"\x1b[4 q\x1b[38;5;196mx", b"\x1b[4 q\x1b[38;5;196mx"),
            (b"\x1b]4;1;rgb:ff/00/00\x07", b"\x1b]4;1;rgb:ff/00/00\x07"),
            (b"\x1b]0;what?\x07", b"\x1b]0;what?\x07"),
            // A control inside a sequence acts; an escape cancels it.
            (b"\x1b[1\r;2H", b"\r\x1b[1;2H"),
            (b"\x1b[6\x1b[0m", b"\x1b[0m"),
        ];
        for (i, (input, want)) in cases.iter().enumerate() {
            assert_eq!(
                run(&[input]),
                want.to_vec(),
                "case {i}: {:?}",
                String::from_utf8_lossy(input)
            );
            // Split at every byte: the same answer.
            let chunks: Vec<&[u8]> = input.chunks(1).collect();
            assert_eq!(run(&chunks), want.to_vec(), "case {i}, byte by byte");
        }
    }

    /// For a terminal that reads single bytes, raw C1 bytes are controls (0x9D starts an OSC,
    /// 0x9C ends a string): dropped. A UTF-8 terminal reads them as parts of characters.
    #[test]
    fn raw_c1_bytes_are_dropped_for_an_eight_bit_terminal() {
        let cases: &[(&[u8], &[u8], &[u8])] = &[
            // (input, for a UTF-8 terminal, for an 8-bit one)
            (
                b"a\x9d52;c;eA==\x07b",
                b"a\x9d52;c;eA==\x07b",
                b"a52;c;eA==\x07b",
            ),
            (
                b"\x1b]0;t\x9c\x9d52;c;x\x07",
                b"\x1b]0;t\x9c\x9d52;c;x\x07",
                b"\x1b]0;t52;c;x\x07",
            ),
            (b"\x9b31mred", b"\x9b31mred", b"31mred"),
            (
                b"\x1b\x9d52;c;eA==\x07b",
                b"\x9d52;c;eA==\x07b",
                b"52;c;eA==\x07b",
            ),
            ("ğ €".as_bytes(), "ğ €".as_bytes(), b"\xc4 \xe2\xac"),
            (b"caf\xe9", b"caf\xe9", b"caf\xe9"),
        ];
        for (i, (input, utf8, eight)) in cases.iter().enumerate() {
            assert_eq!(run_for(false, &[input]), utf8.to_vec(), "case {i}, UTF-8");
            assert_eq!(run_for(true, &[input]), eight.to_vec(), "case {i}, 8-bit");
        }
    }
}
