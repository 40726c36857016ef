//! Where output goes: the node's lines (chats, replies) and its log, both
//! through one [`Screen`], so that on a terminal a log line is printed
//! above the line being typed instead of through it.

use std::fs::File;
use std::io::{self, Write};
use std::sync::{Arc, Mutex, PoisonError};

use rustyline::ExternalPrinter;

/// The node's output: plain lines on stdout, or above the line being
/// edited. Clones share it.
#[derive(Clone)]
pub struct Screen(Arc<Mutex<Printer>>);

enum Printer {
    Plain,
    Editor(Box<dyn ExternalPrinter + Send>),
}

impl Screen {
    /// Plain lines on stdout.
    pub fn plain() -> Screen {
        Screen(Arc::new(Mutex::new(Printer::Plain)))
    }

    /// From now on, lines go above the line `printer`'s editor shows.
    pub fn use_editor(&self, printer: Box<dyn ExternalPrinter + Send>) {
        *self.lock() = Printer::Editor(printer);
    }

    /// Whether lines go through the line editor (stdout is its terminal).
    pub fn is_editor(&self) -> bool {
        matches!(*self.lock(), Printer::Editor(_))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Printer> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Prints `text` (one or more lines). Errors (a closed stdout) are
    /// ignored: the node goes on without a screen.
    pub fn print(&self, text: &str) {
        let mut printer = self.lock();
        if let Printer::Editor(editor) = &mut *printer {
            if editor.print(format!("{text}\n")).is_ok() {
                return;
            }
            *printer = Printer::Plain;
        }
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }
}

/// Where the log goes.
enum LogTarget {
    Stderr,
    Screen(Screen),
    File(File),
}

/// The log's output, for env_logger's `Target::Pipe`: whole lines, to
/// stderr, to the screen once a line editor runs, or to `--log-file`.
#[derive(Clone)]
pub struct LogSink(Arc<Mutex<(LogTarget, Vec<u8>)>>);

impl LogSink {
    /// Logs to stderr, or to `file` if given.
    pub fn new(file: Option<File>) -> LogSink {
        let target = file.map_or(LogTarget::Stderr, LogTarget::File);
        LogSink(Arc::new(Mutex::new((target, Vec::new()))))
    }

    /// Log lines that went to stderr go to `screen` from now on (when it
    /// is the line editor's).
    pub fn follow_screen(&self, screen: &Screen) {
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(sink.0, LogTarget::Stderr) && screen.is_editor() {
            sink.0 = LogTarget::Screen(screen.clone());
        }
    }
}

impl Write for LogSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (target, pending) = &mut *sink;
        pending.extend_from_slice(buf);
        while let Some(end) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            match target {
                LogTarget::Stderr => {
                    let _ = io::stderr().write_all(&line);
                }
                LogTarget::File(file) => {
                    let _ = file.write_all(&line);
                }
                LogTarget::Screen(screen) => {
                    screen.print(String::from_utf8_lossy(&line[..line.len() - 1]).as_ref())
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
