//! What COMMAND left switched on in the caller's terminal, and how to switch it off when
//! `airlock run` ends. [`TermModes`] reads what the filter passed on, exactly as the terminal
//! reads it: DEC private modes set and not reset (mouse reporting, bracketed paste, focus
//! events, the alternate screen, a hidden cursor, application keys), colours changed by OSC,
//! and whether any escape sequence passed at all (hidden or coloured text, charsets, scroll
//! margins: a soft reset covers them). A command that wrote no escape gets no reset.

use std::collections::BTreeSet;

/// DEC private modes switched off at the end when COMMAND left them on: application cursor
/// keys, reverse video, the mouse (X10, normal, highlight, button, any-event, UTF-8, SGR,
/// urxvt, pixels), focus events, application keypad, the alternate screens, bracketed paste.
const RESTORED: &[u32] = &[
    1, 5, 9, 47, 66, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1015, 1016, 1047, 1049, 2004,
];
/// Alternate screens: left first, so the other resets apply to the caller's screen.
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
    /// Restorable DEC private modes set and not reset since.
    set: BTreeSet<u32>,
    cursor_hidden: bool,
    /// Any escape sequence passed (a soft reset is then sent).
    escapes: bool,
    /// OSC colour numbers used (4, 10-19).
    colours: BTreeSet<u32>,
}

impl TermModes {
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

    /// A CSI sequence ended with `last`: `CSI ? Pm h` sets modes, `CSI ? Pm l` resets them.
    fn csi_done(&mut self, last: u8) {
        let Some(params) = self.head.strip_prefix(b"?") else {
            return;
        };
        let on = match last {
            b'h' => true,
            b'l' => false,
            _ => return,
        };
        for n in params.split(|&c| c == b';').filter_map(number) {
            if n == 25 {
                self.cursor_hidden = !on;
            } else if RESTORED.contains(&n) {
                if on {
                    self.set.insert(n);
                } else {
                    self.set.remove(&n);
                }
            }
        }
    }

    /// What switches off what the output left on: nothing when it passed no escape.
    pub fn restore(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let screens = self.set.iter().filter(|n| SCREENS.contains(n));
        let others = self.set.iter().filter(|n| !SCREENS.contains(n));
        for n in screens.chain(others) {
            out.extend_from_slice(format!("\x1b[?{n}l").as_bytes());
        }
        if self.cursor_hidden {
            out.extend_from_slice(b"\x1b[?25h");
        }
        if self.escapes {
            // Soft reset (DECSTR: attributes, charsets, margins, insert and origin modes,
            // keypad), and plain attributes for terminals without it.
            out.extend_from_slice(b"\x1b[!p\x1b[0m");
        }
        for &n in &self.colours {
            let reset = if n == 4 { 104 } else { n + 100 };
            out.extend_from_slice(format!("\x1b]{reset}\x07").as_bytes());
        }
        out
    }
}

/// A decimal number of at most 9 digits.
fn number(digits: &[u8]) -> Option<u32> {
    if digits.is_empty() || digits.len() > 9 {
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
        let cases: &[(&[u8], &[u8])] = &[
            (b"plain text\r\n", b""),
            (b"\x1b[31mred", b"\x1b[!p\x1b[0m"),
            (b"\x1b[8mhidden", b"\x1b[!p\x1b[0m"),
            (
                b"\x1b[?1000h\x1b[?1006h",
                b"\x1b[?1000l\x1b[?1006l\x1b[!p\x1b[0m",
            ),
            (b"\x1b[?1000;1006h\x1b[?1000l", b"\x1b[?1006l\x1b[!p\x1b[0m"),
            (
                b"\x1b[?2004h\x1b[?1049h",
                b"\x1b[?1049l\x1b[?2004l\x1b[!p\x1b[0m",
            ),
            (b"\x1b[?25l", b"\x1b[?25h\x1b[!p\x1b[0m"),
            (b"\x1b[?25l\x1b[?25h", b"\x1b[!p\x1b[0m"),
            (b"\xc2\x9b?1003h", b"\x1b[?1003l\x1b[!p\x1b[0m"),
            (
                b"\x1b]11;#000000\x07\x1b]4;1;red\x1b\\",
                b"\x1b[!p\x1b[0m\x1b]104\x07\x1b]111\x07",
            ),
            (b"\x1b]0;title\x07", b"\x1b[!p\x1b[0m"),
            // Split sequences are read whole; unknown modes are left alone.
            (b"\x1b[?7777h", b"\x1b[!p\x1b[0m"),
        ];
        for (i, (passed, want)) in cases.iter().enumerate() {
            let mut whole = TermModes::default();
            whole.observe(passed);
            assert_eq!(
                String::from_utf8_lossy(&whole.restore()),
                String::from_utf8_lossy(want),
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
