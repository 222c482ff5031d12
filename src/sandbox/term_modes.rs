//! What COMMAND may have left switched on in the caller's terminal, and how to switch it off
//! when `airlock run` ends. [`TermModes`] reads what the filter passed on: whether any escape
//! sequence passed at all (a command that wrote none gets no reset), which alternate screen was
//! entered and not left, whether the kitty keyboard protocol or xterm's modifyOtherKeys was
//! set, and which OSC colours changed. The reset then switches off every mode that outlives a
//! command (mouse reporting, focus events, bracketed paste, synchronized output, application
//! keys, reverse video) whether or not it was seen set, since terminals parse more spellings
//! than any tracker reads; leaves an alternate screen only when one was entered (leaving it
//! restores a saved cursor); shows the cursor and soft-resets attributes (DECSTR: hidden or
//! coloured text, charsets, margins).

use std::collections::BTreeSet;

/// DEC private modes switched off whenever any escape passed, in one DECRST: application cursor
/// keys, reverse video, the mouse (X10, normal, highlight, button, any-event, UTF-8, SGR, urxvt,
/// pixels), focus events, application keypad, bracketed paste, synchronized output.
const RESET: &[u8] = b"\x1b[?1;5;9;66;1000;1001;1002;1003;1004;1005;1006;1015;1016;2004;2026l";
/// Alternate screens: left first, so the resets apply to the caller's screen.
const SCREENS: &[u32] = &[1049, 1047, 47];
/// Longest CSI or OSC head kept for reading (longer ones are not tracked).
const MOST_HEAD: usize = 64;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Read {
    #[default]
    Ground,
    Esc,
    /// After a UTF-8 lead byte 0xC2 (C2 9B is CSI, C2 9D OSC).
    C2,
    /// In a CSI sequence (its bytes after the introducer in `head`).
    Csi,
    /// In an OSC string, reading its number into `head`.
    OscNumber,
    /// In the rest of an OSC string.
    Osc,
}

/// The modes the passed output left on.
#[derive(Debug, Default)]
pub struct TermModes {
    read: Read,
    head: Vec<u8>,
    /// Alternate screens entered and not left since.
    screens: BTreeSet<u32>,
    /// Any escape sequence passed (the reset is then sent).
    escapes: bool,
    /// The kitty keyboard protocol was pushed or set (`CSI > … u`, `CSI = … u`).
    kitty: bool,
    /// xterm's modifyOtherKeys or another key modifier resource was set (`CSI > … m`).
    modify_keys: bool,
    /// OSC colour numbers used (4, 10-19).
    colours: BTreeSet<u32>,
}

impl TermModes {
    /// The reset for output nothing was read of (any mode may be on; no screen is left).
    pub fn unknown() -> Vec<u8> {
        TermModes {
            escapes: true,
            kitty: true,
            modify_keys: true,
            ..TermModes::default()
        }
        .restore()
    }

    /// Reads `passed`, the bytes that went on to the terminal.
    pub fn observe(&mut self, passed: &[u8]) {
        for &b in passed {
            self.step(b);
        }
    }

    fn step(&mut self, b: u8) {
        match self.read {
            Read::Ground => match b {
                0x1b => self.read = Read::Esc,
                0xc2 => self.read = Read::C2,
                _ => {}
            },
            Read::Esc => {
                self.escapes = true;
                match b {
                    b'[' => self.enter(Read::Csi),
                    b']' => self.enter(Read::OscNumber),
                    0x1b => {}
                    0xc2 => self.read = Read::C2,
                    _ => self.read = Read::Ground,
                }
            }
            Read::C2 => match b {
                0x9b => {
                    self.escapes = true;
                    self.enter(Read::Csi);
                }
                0x9d => {
                    self.escapes = true;
                    self.enter(Read::OscNumber);
                }
                _ => {
                    self.read = Read::Ground;
                    self.step(b);
                }
            },
            Read::Csi => match b {
                0x40..=0x7e => {
                    self.csi_done(b);
                    self.read = Read::Ground;
                }
                0x1b => self.read = Read::Esc,
                0x18 | 0x1a => self.read = Read::Ground,
                // A C1 CSI starts the sequence anew; other controls act and are not part of it.
                0xc2 => self.read = Read::C2,
                0x00..=0x1f => {}
                _ if self.head.len() < MOST_HEAD => self.head.push(b),
                _ => {}
            },
            Read::OscNumber => match b {
                b'0'..=b'9' if self.head.len() < MOST_HEAD => self.head.push(b),
                _ => {
                    if let Some(n) = number(&self.head) {
                        if n == 4 || (10..=19).contains(&n) {
                            self.colours.insert(n);
                        }
                    }
                    self.read = Read::Osc;
                    self.step(b);
                }
            },
            Read::Osc => match b {
                0x07 | 0x18 | 0x1a => self.read = Read::Ground,
                0x1b => self.read = Read::Esc,
                _ => {}
            },
        }
    }

    fn enter(&mut self, read: Read) {
        self.head.clear();
        self.read = read;
    }

    /// A CSI sequence ended with `last`: `CSI ? Pm h` and `l` enter and leave screens; `CSI >`
    /// and `CSI =` with `u` or `m` set keyboard protocols.
    fn csi_done(&mut self, last: u8) {
        match (self.head.first(), last) {
            (Some(b'>' | b'='), b'u') => self.kitty = true,
            (Some(b'>'), b'm') => self.modify_keys = true,
            (Some(b'?'), b'h' | b'l') => {
                for n in self.head[1..].split(|&c| c == b';').filter_map(number) {
                    if SCREENS.contains(&n) {
                        if last == b'h' {
                            self.screens.insert(n);
                        } else {
                            self.screens.remove(&n);
                        }
                    }
                }
            }
            _ => {}
        }
    }

    /// What switches off what the output may have left on: nothing when it passed no escape.
    pub fn restore(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.escapes {
            return out;
        }
        for n in SCREENS.iter().filter(|n| self.screens.contains(n)) {
            out.extend_from_slice(format!("\x1b[?{n}l").as_bytes());
        }
        out.extend_from_slice(RESET);
        if self.kitty {
            // Flags of the current entry off, then every pushed entry popped.
            out.extend_from_slice(b"\x1b[=0u\x1b[<99u");
        }
        if self.modify_keys {
            out.extend_from_slice(b"\x1b[>4m");
        }
        // The cursor shown; a soft reset (DECSTR: attributes, charsets, margins, insert and
        // origin modes, keypad), and plain attributes for terminals without it.
        out.extend_from_slice(b"\x1b[?25h\x1b[!p\x1b[0m");
        for &n in &self.colours {
            let reset = if n == 4 { 104 } else { n + 100 };
            out.extend_from_slice(format!("\x1b]{reset}\x07").as_bytes());
        }
        out
    }
}

/// A decimal number, read by value as terminals read it (`0001049` is 1049).
fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let first = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    let digits = &digits[first..];
    if digits.is_empty() {
        return Some(0);
    }
    if digits.len() > 9 {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (what passed the filter, what `airlock run` writes at the end)
    #[test]
    fn what_was_left_on_is_switched_off() {
        const R: &str = "\x1b[?1;5;9;66;1000;1001;1002;1003;1004;1005;1006;1015;1016;2004;2026l";
        const END: &str = "\x1b[?25h\x1b[!p\x1b[0m";
        let base = format!("{R}{END}");
        let cases: Vec<(&[u8], String)> = vec![
            (b"plain text\r\n", String::new()),
            (b"\x1b[31mred", base.clone()),
            (b"\x1b[?1000h\x1b[?1006h", base.clone()),
            (b"\x1b[?2004h\x1b[?1049h", format!("\x1b[?1049l{base}")),
            (b"\x1b[?1049h\x1b[?1049l", base.clone()),
            // Read by value, controls inside the sequence skipped, a C1 CSI restarting it.
            (b"\x1b[?0001049h", format!("\x1b[?1049l{base}")),
            (b"\x1b[?10\r49h", format!("\x1b[?1049l{base}")),
            (b"\x1b[?1\xc2\x9b?47h", format!("\x1b[?47l{base}")),
            (b"\x1b[>1u", format!("{R}\x1b[=0u\x1b[<99u{END}")),
            (b"\x1b[>4;2m", format!("{R}\x1b[>4m{END}")),
            (
                b"\x1b]11;#000000\x07\x1b]4;1;red\x1b\\",
                format!("{base}\x1b]104\x07\x1b]111\x07"),
            ),
            (b"\x1b]0;title\x07", base.clone()),
        ];
        for (i, (passed, want)) in cases.iter().enumerate() {
            let mut whole = TermModes::default();
            whole.observe(passed);
            assert_eq!(
                String::from_utf8_lossy(&whole.restore()),
                want.as_str(),
                "case {i}"
            );
            let mut bytewise = TermModes::default();
            for c in passed.chunks(1) {
                bytewise.observe(c);
            }
            assert_eq!(
                bytewise.restore(),
                whole.restore(),
                "case {i}, byte by byte"
            );
        }
    }
}
