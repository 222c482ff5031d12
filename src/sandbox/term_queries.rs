//! Control strings that ask the caller's terminal a question. The terminal answers by typing
//! the reply into its input: while COMMAND runs that reaches COMMAND, but a reply to the last
//! question can land after `airlock run` has given the terminal back, in the caller's shell
//! (and a reply is text the sandbox chose part of, such as a window title read back). So
//! the output filter (`term_filter.rs`) drops them: device status and cursor position reports
//! (`CSI n`), device attributes (`CSI c`, `ESC Z`), window reports and operations (`CSI t`),
//! terminal parameters (`CSI x`), mode and state reports (`CSI $p`, `$u`, `$w`), the terminal's
//! version (`CSI > q`), keyboard and graphics queries (`CSI ? u`, `CSI ? S`, `CSI ? m`), the
//! answerback (ENQ) and colour queries (`OSC 4;1;?`, `OSC 11;?`).

/// Does the CSI sequence with these parameter and intermediate bytes (`?6`, `$`) and this
/// final byte ask the terminal for a reply?
pub(super) fn csi_asks(params: &[u8], final_byte: u8) -> bool {
    // Terminals ignore DEL inside a sequence: `CSI DEL > q` is `CSI > q`.
    let private = params.iter().copied().find(|&b| b != 0x7f);
    let intermediate = params
        .iter()
        .rev()
        .find(|b| (0x20..=0x2f).contains(*b))
        .copied();
    match (final_byte, intermediate) {
        // DSR, CPR, DECXCPR and the private status reports.
        (b'n', _) => true,
        // DA1, DA2 (`>`), DA3 (`=`).
        (b'c', None) => true,
        // Window operations and reports (xterm's, and title stack pushes).
        (b't', _) => true,
        // DECREQTPARM.
        (b'x', None) => true,
        // DECRQM, DECRQTSR, DECRQPSR.
        (b'p' | b'u' | b'w', Some(b'$')) => true,
        // XTVERSION.
        (b'q', None) => private == Some(b'>'),
        // Kitty keyboard flags, XTSMGRAPHICS, XTQMODKEYS.
        (b'u' | b'S' | b'm', None) => private == Some(b'?'),
        _ => false,
    }
}

/// Does this OSC string (its introducer, number, text and terminator, as written) ask for a
/// reply: one of its `;`-separated fields is `?` (`OSC 11;?`, `OSC 4;1;?`)?
pub(super) fn osc_asks(string: &[u8]) -> bool {
    string
        .split(|&b| matches!(b, b';' | 0x07 | 0x1b | 0x18 | 0x1a))
        .any(|field| field == b"?")
}
