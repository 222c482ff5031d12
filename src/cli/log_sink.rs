//! `serve`'s log output: lines are queued in memory and written to stderr in batches by one
//! thread, so a request's access-log line costs its formatting and a copy on the worker, not a
//! `write(2)` (measured at about a tenth of Airlock's CPU per request when every line was
//! its own system call, and a worker stalled for as long as a slow log reader did).
//!
//! A batch goes out when a warning or error arrives, when 64 KiB are queued, or [`LINGER`]
//! after its first line. Past [`QUEUE_CAP`] queued bytes a logging thread waits for the
//! writer, as it did when it wrote itself: lines are delayed, never dropped. [`LogSink::flush`]
//! writes what is queued (before a note on stderr and at exit).

use std::io::{self, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

/// How long a batch waits for more lines after its first.
const LINGER: Duration = Duration::from_millis(10);
/// Queued bytes that are written at once, without waiting for [`LINGER`].
const BATCH: usize = 64 * 1024;
/// Queued bytes beyond which a logging thread waits for the writer.
const QUEUE_CAP: usize = 4 * 1024 * 1024;
/// Longest [`LogSink::flush`] waits for a writer that is stuck.
const FLUSH_WAIT: Duration = Duration::from_secs(2);

/// Where log lines go: cheap to clone, each clone a handle on the same queue.
#[derive(Clone)]
pub struct LogSink {
    shared: Arc<Shared>,
}

struct Shared {
    queue: Mutex<Queue>,
    /// Wakes the writer: a first line, an urgent line, a full batch.
    wake: Condvar,
    /// Wakes threads waiting for the queue to drain (back-pressure, flush).
    drained: Condvar,
    cap: usize,
}

#[derive(Default)]
struct Queue {
    bytes: Vec<u8>,
    /// A warning or error is queued: write without lingering.
    urgent: bool,
    /// The writer holds a batch it has not finished writing.
    writing: bool,
    /// No writer thread (none wanted, or it could not start): lines go straight to stderr.
    direct: bool,
}

impl LogSink {
    /// A sink whose writer thread owns `out`.
    pub fn start<W: Write + Send + 'static>(out: W) -> LogSink {
        Self::with_cap(out, QUEUE_CAP)
    }

    /// A sink that writes each line to stderr as it comes, with no thread (commands other than
    /// `serve`, which log a few lines and exit).
    pub fn direct() -> LogSink {
        let sink = Self::shared(QUEUE_CAP);
        sink.lock().direct = true;
        LogSink { shared: sink }
    }

    fn shared(cap: usize) -> Arc<Shared> {
        Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            drained: Condvar::new(),
            cap,
        })
    }

    fn with_cap<W: Write + Send + 'static>(mut out: W, cap: usize) -> LogSink {
        let shared = Self::shared(cap);
        let writer = shared.clone();
        let started = std::thread::Builder::new()
            .name("airlock-log".into())
            .spawn(move || writer.write_batches(&mut out));
        if started.is_err() {
            shared.lock().direct = true;
        }
        LogSink { shared }
    }

    /// Waits (at most two seconds) until every line queued so far has been written.
    pub fn flush(&self) {
        let deadline = Instant::now() + FLUSH_WAIT;
        let mut q = self.shared.lock();
        if !q.bytes.is_empty() {
            q.urgent = true;
            self.shared.wake.notify_one();
        }
        while (!q.bytes.is_empty() || q.writing) && !q.direct {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            q = match self.shared.drained.wait_timeout(q, left) {
                Ok((q, _)) => q,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }

    fn push(&self, line: &[u8], urgent: bool) -> io::Result<()> {
        let mut q = self.shared.lock();
        while q.bytes.len() >= self.shared.cap && !q.direct {
            q = match self.shared.drained.wait(q) {
                Ok(q) => q,
                Err(poisoned) => poisoned.into_inner(),
            };
        }
        if q.direct {
            drop(q);
            return io::stderr().write_all(line);
        }
        let first = q.bytes.is_empty();
        q.bytes.extend_from_slice(line);
        q.urgent |= urgent;
        let full = q.bytes.len() >= BATCH;
        drop(q);
        if first || urgent || full {
            self.shared.wake.notify_one();
        }
        Ok(())
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // A thread that panicked while logging left whole lines behind: keep going.
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write_batches(&self, out: &mut dyn Write) {
        let mut batch = Vec::new();
        loop {
            let mut q = self.lock();
            while q.bytes.is_empty() {
                q = self.wake.wait(q).unwrap_or_else(|p| p.into_inner());
            }
            if !q.urgent && q.bytes.len() < BATCH {
                // More lines, a warning or a full batch end the wait early.
                let until = Instant::now() + LINGER;
                while !q.urgent && q.bytes.len() < BATCH {
                    let Some(left) = until.checked_duration_since(Instant::now()) else {
                        break;
                    };
                    q = match self.wake.wait_timeout(q, left) {
                        Ok((q, _)) => q,
                        Err(p) => p.into_inner().0,
                    };
                }
            }
            std::mem::swap(&mut q.bytes, &mut batch);
            q.urgent = false;
            q.writing = true;
            drop(q);
            self.drained.notify_all();
            // Nowhere to report a failed write to stderr: the lines are lost, as before.
            let _ = out.write_all(&batch).and_then(|()| out.flush());
            batch.clear();
            if batch.capacity() > 4 * BATCH {
                batch = Vec::new();
            }
            self.lock().writing = false;
            self.drained.notify_all();
        }
    }
}

/// One log line on its way into the queue (tracing's formatter writes a line at once).
pub struct LineWriter<'a> {
    sink: &'a LogSink,
    urgent: bool,
}

impl Write for LineWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.sink.push(buf, self.urgent)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for LogSink {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> LineWriter<'a> {
        LineWriter {
            sink: self,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> LineWriter<'a> {
        LineWriter {
            sink: self,
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    /// Collects what the writer thread writes, one `write_all` per batch; blocks while `gate`
    /// is held, like a log reader that stopped reading.
    #[derive(Clone)]
    struct Capture {
        written: Arc<Mutex<Vec<u8>>>,
        writes: Arc<Mutex<usize>>,
        gate: Arc<Mutex<()>>,
    }

    impl Capture {
        fn new() -> Capture {
            Capture {
                written: Arc::default(),
                writes: Arc::default(),
                gate: Arc::default(),
            }
        }
        fn text(&self) -> String {
            String::from_utf8(self.written.lock().unwrap().clone()).unwrap()
        }
    }

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let _open = self.gate.lock().unwrap();
            self.written.lock().unwrap().extend_from_slice(buf);
            *self.writes.lock().unwrap() += 1;
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn line(sink: &LogSink, urgent: bool, text: &str) {
        LineWriter { sink, urgent }
            .write_all(text.as_bytes())
            .unwrap();
    }

    #[test]
    fn lines_from_many_threads_arrive_whole_in_order_and_in_few_writes() {
        let out = Capture::new();
        let sink = LogSink::start(out.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for i in 0..2_000 {
                        line(&sink, false, &format!("thread {t} line {i}\n"));
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        sink.flush();
        let text = out.text();
        assert_eq!(text.lines().count(), 8_000);
        for t in 0..4 {
            let mine: Vec<&str> = text
                .lines()
                .filter(|l| l.starts_with(&format!("thread {t} ")))
                .collect();
            let expected: Vec<String> =
                (0..2_000).map(|i| format!("thread {t} line {i}")).collect();
            assert_eq!(mine, expected, "thread {t}'s lines, whole and in order");
        }
        let writes = *out.writes.lock().unwrap();
        assert!(writes < 1_000, "8,000 lines in {writes} writes");
    }

    #[test]
    fn queued_lines_and_warnings_go_out_without_a_flush() {
        let out = Capture::new();
        let sink = LogSink::start(out.clone());
        line(&sink, false, "queued\n");
        line(&sink, true, "WARN something\n");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !out.text().contains("WARN something") {
            assert!(Instant::now() < deadline, "the warning was never written");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(out.text(), "queued\nWARN something\n");
    }

    /// A log reader that stops reading delays the logging threads once the queue is full; no
    /// line is dropped, and everything arrives once it reads again.
    #[test]
    fn a_stuck_reader_holds_logging_threads_back_and_loses_nothing() {
        let out = Capture::new();
        let stuck = out.gate.lock().unwrap();
        let sink = LogSink::with_cap(out.clone(), 1024);
        let (done_tx, done_rx) = mpsc::channel();
        let logger = {
            let sink = sink.clone();
            std::thread::spawn(move || {
                for i in 0..1_000 {
                    line(&sink, false, &format!("line {i:04}\n"));
                }
                done_tx.send(()).unwrap();
            })
        };
        // 10,000 bytes cannot fit beside a stuck batch in a 1 KiB queue.
        assert!(done_rx.recv_timeout(Duration::from_millis(300)).is_err());
        drop(stuck);
        done_rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the logger finished");
        logger.join().unwrap();
        sink.flush();
        let expected: String = (0..1_000).map(|i| format!("line {i:04}\n")).collect();
        assert_eq!(out.text(), expected);
    }
}
