//! The terminal: COMMAND never gets the caller's terminal. When any of stdin, stdout or stderr
//! is a terminal, `airlock run` opens a fresh pseudo-terminal, gives COMMAND its slave side in
//! place of each terminal descriptor (as its controlling terminal, in a new session) and relays
//! between the caller's terminal and the master side. So TIOCSTI, `/dev/tty` or job-control
//! tricks reach only the sandbox's own pty. The caller's terminal is put in raw mode while
//! COMMAND runs (when `airlock run` is in the foreground) and restored afterwards. What COMMAND
//! writes passes [`TermFilter`] on its way to the caller's terminal (no clipboard access, no
//! file transfer, no DCS strings). So does what it writes to a stdout or stderr that is not a
//! terminal while another of fds 0–2 is one (`airlock run -- … | tee log`): that output goes
//! through a pipe `airlock run` relays, since it usually ends on the same terminal (tee, less);
//! only a run with no terminal at all passes output byte for byte.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::term_filter::TermFilter;

/// A pty for COMMAND, and the relay state.
pub struct Pty {
    master: OwnedFd,
    /// COMMAND's side; closed in `airlock run` once COMMAND started.
    slave: Option<OwnedFd>,
    /// Which of fds 0, 1, 2 get the slave.
    pub on_tty: [bool; 3],
    /// The caller's terminal descriptor (for the window size).
    tty: RawFd,
    /// The caller's settings to restore (set when we switched it to raw mode).
    saved: Option<libc::termios>,
    /// The output relay; it returns its filter, which knows what COMMAND left on.
    output: Option<std::thread::JoinHandle<Option<TermFilter>>>,
    /// Where the output relay writes (1 or 2).
    out_fd: RawFd,
    /// stdout and stderr where they are not terminals: (fd, read end, write end until
    /// COMMAND started), relayed through a filter of their own.
    pipes: Vec<(RawFd, OwnedFd, Option<OwnedFd>)>,
    /// The pipes' relays.
    pipe_relays: Vec<std::thread::JoinHandle<Option<TermFilter>>>,
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn is_tty(fd: RawFd) -> bool {
    // SAFETY: plain syscall.
    unsafe { libc::isatty(fd) == 1 }
}

impl Pty {
    /// A pty if any of fds 0–2 is a terminal, owned by `owner` (so COMMAND may reopen it).
    pub fn open(owner: (u32, u32)) -> io::Result<Option<Pty>> {
        let on_tty = [is_tty(0), is_tty(1), is_tty(2)];
        let Some(tty) = (0..3).find(|&fd| on_tty[fd as usize]) else {
            return Ok(None);
        };
        // SAFETY: plain syscalls; every descriptor is owned as soon as it exists.
        unsafe {
            let m = cvt(libc::posix_openpt(
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ))?;
            let master = OwnedFd::from_raw_fd(m);
            cvt(libc::grantpt(m))?;
            cvt(libc::unlockpt(m))?;
            let s = cvt(libc::ioctl(
                m,
                libc::TIOCGPTPEER,
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            ))?;
            let slave = OwnedFd::from_raw_fd(s);
            cvt(libc::fchown(s, owner.0, owner.1))?;
            cvt(libc::fchmod(s, 0o600))?;
            // The caller's settings and size, so COMMAND sees the same terminal.
            let mut t: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(tty, &mut t) == 0 {
                libc::tcsetattr(s, libc::TCSANOW, &t);
            }
            let mut pipes = Vec::new();
            for fd in [1, 2] {
                if !on_tty[fd as usize] {
                    let mut p = [0; 2];
                    cvt(libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC))?;
                    let (r, w) = (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1]));
                    pipes.push((fd, r, Some(w)));
                }
            }
            let pty = Pty {
                master,
                slave: Some(slave),
                on_tty,
                tty,
                saved: None,
                output: None,
                out_fd: if on_tty[1] { 1 } else { 2 },
                pipes,
                pipe_relays: Vec::new(),
            };
            pty.resize();
            Ok(Some(pty))
        }
    }

    /// What COMMAND's fds 0, 1, 2 become: the pty's slave for each terminal, a relayed pipe
    /// for a stdout or stderr that is not one (`None`: inherited; only stdin).
    pub fn stdio(&self) -> [Option<RawFd>; 3] {
        let slave = self.slave.as_ref().map(|s| s.as_raw_fd());
        let mut out = [None; 3];
        for (i, slot) in out.iter_mut().enumerate() {
            if self.on_tty[i] {
                *slot = slave;
            }
        }
        for (fd, _, w) in &self.pipes {
            out[*fd as usize] = w.as_ref().map(|w| w.as_raw_fd());
        }
        out
    }

    /// Which of COMMAND's fds 0–2 is the pty (to make it the controlling terminal).
    pub fn ctty_fd(&self) -> Option<usize> {
        self.on_tty.iter().position(|t| *t)
    }

    /// Copies the caller's window size to the pty (COMMAND gets SIGWINCH).
    pub fn resize(&self) {
        // SAFETY: winsize is plain data; the ioctls read and write it.
        unsafe {
            let mut ws: libc::winsize = std::mem::zeroed();
            if libc::ioctl(self.tty, libc::TIOCGWINSZ, &mut ws) == 0 {
                libc::ioctl(self.master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
            }
        }
    }

    /// After COMMAND started: closes our copy of the slave, puts the caller's terminal in raw
    /// mode (if stdin is a terminal and we are in the foreground) and starts the relays.
    pub fn start(&mut self) -> io::Result<()> {
        self.slave = None;
        for (fd, read, write) in &mut self.pipes {
            // Only COMMAND writes now: its exit (and its namespace's) is the pipe's end.
            *write = None;
            let (to, from) = (*fd, read.try_clone()?);
            let filter = TermFilter::new(eight_bit_locale());
            self.pipe_relays.push(
                std::thread::Builder::new()
                    .name("airlock-pipe-out".into())
                    .spawn(move || copy(from.as_raw_fd(), to, Some(filter)))?,
            );
        }
        let out_fd = self.out_fd;
        // Each relay owns its own duplicate of the master, so its descriptor stays valid for
        // as long as the thread runs.
        let master = self.master.try_clone()?;
        let filter = TermFilter::new(eight_bit_locale());
        self.output = Some(
            std::thread::Builder::new()
                .name("airlock-pty-out".into())
                .spawn(move || copy(master.as_raw_fd(), out_fd, Some(filter)))?,
        );
        // SAFETY: plain syscalls on the caller's terminal; `t` is plain data.
        let foreground = self.on_tty[0] && unsafe { libc::tcgetpgrp(0) == libc::getpgrp() };
        if foreground {
            // SAFETY: as above.
            unsafe {
                let mut t: libc::termios = std::mem::zeroed();
                cvt(libc::tcgetattr(0, &mut t))?;
                let mut raw = t;
                libc::cfmakeraw(&mut raw);
                cvt(libc::tcsetattr(0, libc::TCSANOW, &raw))?;
                self.saved = Some(t);
            }
            // Detached: it may stay blocked reading stdin until `airlock run` exits.
            let master = self.master.try_clone()?;
            std::thread::Builder::new()
                .name("airlock-pty-in".into())
                .spawn(move || copy(0, master.as_raw_fd(), None))?;
        }
        Ok(())
    }

    /// After COMMAND's namespace is gone: lets the output drain (the last slave is closed, so
    /// the master reads EIO soon), switches off what COMMAND left on in the caller's terminal
    /// (mouse reporting, hidden text, the alternate screen, changed colours …) and restores its
    /// settings.
    pub fn finish(&mut self) {
        if let Some(h) = self.output.take() {
            let deadline = std::time::Instant::now() + Duration::from_secs(2);
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            // Still writing: what it left on is unknown, so every mode is reset.
            let reset = match h.is_finished().then(|| h.join()) {
                Some(Ok(Some(filter))) => filter.restore(),
                _ => super::term_modes::TermModes::unknown(),
            };
            if is_tty(self.out_fd) {
                let _ = write_all(self.out_fd, &reset);
            }
        }
        // Everything COMMAND wrote to a pipe is passed on: its namespace is gone, so every
        // write end is closed and each relay ends (or its reader went away).
        for h in self.pipe_relays.drain(..) {
            let _ = h.join();
        }
        self.restore();
    }

    /// Gives the caller's terminal back as it was, dropping input typed but not read: a
    /// terminal's reply to a question COMMAND asked last would otherwise be read by the
    /// caller's shell as typed (`term_filter.rs` drops such questions; this covers one already
    /// on its way). `tcflush` then `TCSANOW`, not `TCSAFLUSH`: that waits for output to drain,
    /// which a paused terminal (Ctrl-S) would make forever.
    fn restore(&mut self) {
        if let Some(t) = self.saved.take() {
            // SAFETY: flushes and restores the same terminal with settings read from it.
            unsafe {
                libc::tcflush(0, libc::TCIFLUSH);
                libc::tcsetattr(0, libc::TCSANOW, &t);
            }
        }
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        self.restore();
    }
}

/// Whether the caller's locale (`LC_ALL`, else `LC_CTYPE`, else `LANG`) reads single bytes
/// where 0x80-0x9F are C1 controls: an ISO 8859 character set, named (`de_DE.ISO-8859-15`) or
/// the default of a name without one (`en_US`; but `ja_JP`, `ko_KR` and `zh_*` default to
/// multibyte sets, whose bytes in that range are text). `C`, `POSIX` and an unset locale are
/// taken as UTF-8: common over SSH from UTF-8 terminals.
fn eight_bit_locale() -> bool {
    let locale = ["LC_ALL", "LC_CTYPE", "LANG"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
    locale.is_some_and(|l| eight_bit_name(&l))
}

fn eight_bit_name(locale: &str) -> bool {
    let name = locale.split('@').next().unwrap_or(locale);
    match name.split_once('.') {
        Some((_, codeset)) => {
            let c = codeset.to_ascii_lowercase().replace(['-', '_'], "");
            c.starts_with("iso8859")
        }
        None => {
            let lang = name.split('_').next().unwrap_or(name);
            !matches!(name, "C" | "POSIX") && !matches!(lang, "ja" | "ko" | "zh")
        }
    }
}

/// Writes all of `bytes` to `to`; false if it could not.
fn write_all(to: RawFd, mut bytes: &[u8]) -> bool {
    while !bytes.is_empty() {
        // SAFETY: writes from a buffer we own.
        let w = unsafe { libc::write(to, bytes.as_ptr().cast(), bytes.len()) };
        if w < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if w <= 0 {
            return false;
        }
        bytes = &bytes[w as usize..];
    }
    true
}

/// Copies from `from` to `to` until EOF or an error (EIO on the master once COMMAND's side is
/// closed), through `filter` if given; returns the filter.
fn copy(from: RawFd, to: RawFd, mut filter: Option<TermFilter>) -> Option<TermFilter> {
    let mut buf = [0u8; 8192];
    let mut filtered = Vec::with_capacity(buf.len());
    loop {
        // SAFETY: reads into a buffer we own.
        let n = unsafe { libc::read(from, buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if n <= 0 {
            return filter;
        }
        let mut rest = &buf[..n as usize];
        if let Some(f) = filter.as_mut() {
            filtered.clear();
            f.filter(rest, &mut filtered);
            rest = &filtered;
        }
        if !write_all(to, rest) {
            return filter;
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn eight_bit_locales_by_name() {
        for (locale, eight) in [
            ("en_US.UTF-8", false),
            ("en_US.utf8", false),
            ("C", false),
            ("POSIX", false),
            ("C.UTF-8", false),
            ("en_US", true),
            ("de_DE.ISO-8859-15", true),
            ("de_DE@euro", true),
            ("ru_RU.iso88595", true),
            ("ja_JP", false),
            ("ja_JP.eucJP", false),
            ("zh_CN.GB18030", false),
            ("en_US.CP1252", false),
        ] {
            assert_eq!(super::eight_bit_name(locale), eight, "{locale}");
        }
    }
}
