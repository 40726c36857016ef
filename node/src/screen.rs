//! Where output goes: the node's lines (chats, replies) and its log, both
//! through one [`Screen`], so that on a terminal a log line is printed
//! above the line being typed instead of through it.
//!
//! On a terminal the line editor (rustyline) prints other threads' lines
//! above its own, but it has two ways to do it: queued to its reading
//! thread while it reads a line, written at once between two lines. A line
//! written at once could overtake one still queued, and a line queued when
//! the node stops could be drawn after the terminal was put back. So the
//! screen has a thread of its own that hands lines to the editor, in order,
//! only while the editor reads (the terminal is in raw mode and the prompt
//! thread is inside `readline`); the event loop only appends to a channel
//! and never waits for the terminal. When the node stops, the lines not yet
//! handed over are printed plainly, after the terminal is put back.

use std::fs::{File, OpenOptions};
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::Duration;

use rustyline::ExternalPrinter;

use crate::protocol::{ScreenLine, StatusBar};

/// How often the screen thread looks whether the editor reads again.
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// The node's output. Clones share it.
#[derive(Clone)]
pub struct Screen(Arc<Mutex<Mode>>);

enum Mode {
    /// Plain lines on stdout.
    Plain,
    /// Lines for the screen thread.
    Editor {
        lines: Sender<String>,
        /// Where the screen thread leaves the lines it did not hand over.
        left: Receiver<Vec<String>>,
        shared: Arc<EditorState>,
    },
}

/// What the prompt thread and the screen thread share.
#[derive(Default)]
pub struct EditorState {
    /// The prompt for the next line (the node's status in it).
    prompt: Mutex<String>,
    /// The prompt thread is inside `readline`.
    reading: AtomicBool,
    /// The node is stopping: hand nothing more to the editor.
    stopping: AtomicBool,
}

impl EditorState {
    /// The state of an editor whose prompt shows `status` first.
    pub fn new(status: StatusBar) -> EditorState {
        EditorState {
            prompt: Mutex::new(status.prompt()),
            ..EditorState::default()
        }
    }

    /// The prompt thread enters (`true`) or leaves `readline`.
    pub fn set_reading(&self, reading: bool) {
        self.reading.store(reading, Ordering::SeqCst);
    }

    /// The prompt to read the next line with.
    pub fn prompt(&self) -> String {
        self.prompt
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The local time of day, `HH:MM`.
fn clock() -> String {
    // SAFETY: time(NULL) reads the clock; localtime_r fills `tm` (plain
    // data) from it, or fails and leaves it zeroed.
    let tm = unsafe {
        let now = libc::time(std::ptr::null_mut());
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut tm);
        tm
    };
    format!("{:02}:{:02}", tm.tm_hour, tm.tm_min)
}

/// Whether stdin's terminal is in raw mode (no canonical line editing):
/// the editor is reading a line.
fn terminal_is_raw() -> bool {
    // SAFETY: termios is plain data, filled by tcgetattr or left zeroed.
    let mut mode: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is valid for the process's life; `mode` is valid.
    unsafe {
        libc::tcgetattr(libc::STDIN_FILENO, &mut mode) == 0 && mode.c_lflag & libc::ICANON == 0
    }
}

impl Screen {
    /// Plain lines on stdout.
    pub fn plain() -> Screen {
        Screen(Arc::new(Mutex::new(Mode::Plain)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Mode> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// From now on, lines go above the line the editor of `printer` shows;
    /// `shared` is what the prompt thread tells of its reading.
    pub fn use_editor(&self, printer: Box<dyn ExternalPrinter + Send>, shared: Arc<EditorState>) {
        let (lines, rx) = mpsc::channel();
        let (leave, left) = mpsc::channel();
        let state = Arc::clone(&shared);
        thread::Builder::new()
            .name("screen".into())
            .spawn(move || {
                let _ = leave.send(hand_over(printer, &rx, &state));
            })
            .expect("spawning the screen thread");
        *self.lock() = Mode::Editor {
            lines,
            left,
            shared,
        };
    }

    /// Whether lines go through the line editor (stdout is its terminal).
    pub fn is_editor(&self) -> bool {
        matches!(*self.lock(), Mode::Editor { .. })
    }

    /// Prints `text` (one or more lines). Never waits for the terminal; a
    /// closed stdout is ignored (the node goes on without a screen).
    pub fn print(&self, text: &str) {
        match &*self.lock() {
            Mode::Editor { lines, .. } if lines.send(text.to_string()).is_ok() => {}
            _ => print_plain(text),
        }
    }

    /// Prints a line of the state machine's, after the local time when it
    /// is `stamped`.
    pub fn print_line(&self, line: &ScreenLine) {
        if line.stamped {
            self.print(&format!("{} {}", clock(), line.text));
        } else {
            self.print(&line.text);
        }
    }

    /// The prompt shows `bar` from the next line on.
    pub fn set_status(&self, bar: StatusBar) {
        if let Mode::Editor { shared, .. } = &*self.lock() {
            *shared.prompt.lock().unwrap_or_else(PoisonError::into_inner) = bar.prompt();
        }
    }

    /// The node stops: nothing more goes to the editor; returns, once the
    /// screen thread has let go, a function that prints the lines it did
    /// not hand over (call it after the terminal is put back).
    pub fn stop(&self) -> impl FnOnce() {
        let mode = std::mem::replace(&mut *self.lock(), Mode::Plain);
        let undelivered = match mode {
            Mode::Plain => Vec::new(),
            Mode::Editor {
                lines,
                left,
                shared,
            } => {
                shared.stopping.store(true, Ordering::SeqCst);
                drop(lines);
                // Bounded: a hand-over caught as the editor stops reading
                // for good could wait for it forever.
                let undelivered = left
                    .recv_timeout(Duration::from_millis(500))
                    .unwrap_or_default();
                // What was handed over last is drawn by the editor, which
                // is reading: let it finish before the terminal is put back.
                if shared.reading.load(Ordering::SeqCst) {
                    thread::sleep(Duration::from_millis(30));
                }
                undelivered
            }
        };
        move || {
            for text in undelivered {
                print_plain(&text);
            }
        }
    }
}

fn print_plain(text: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{text}");
    let _ = out.flush();
}

/// The screen thread: hands lines to the editor in order, in batches, only
/// while it reads; returns the lines it did not hand over when stopped.
fn hand_over(
    mut printer: Box<dyn ExternalPrinter + Send>,
    lines: &Receiver<String>,
    state: &EditorState,
) -> Vec<String> {
    let stopping = || state.stopping.load(Ordering::SeqCst);
    let mut batch: Vec<String> = Vec::new();
    loop {
        if batch.is_empty() {
            match lines.recv_timeout(Duration::from_millis(50)) {
                Ok(text) => batch.push(text),
                Err(RecvTimeoutError::Timeout) if !stopping() => continue,
                Err(_) => return batch,
            }
        }
        batch.extend(lines.try_iter());
        // Raw mode and inside readline, seen twice a tick apart: the editor
        // takes queued lines, in order, and draws them above its line.
        let reading = || state.reading.load(Ordering::SeqCst) && terminal_is_raw();
        while !(reading() && {
            thread::sleep(LOOK_EVERY);
            reading()
        }) {
            if stopping() {
                batch.extend(lines.try_iter());
                return batch;
            }
            thread::sleep(LOOK_EVERY);
        }
        if printer.print(batch.join("\n")).is_err() {
            return batch;
        }
        batch.clear();
    }
}

/// Where the log goes.
enum LogTarget {
    Stderr,
    Screen(Screen),
    /// `--log-file`, and its path, to open it again ([`LogSink::reopen`]).
    File(File, PathBuf),
}

/// Opens `path` to append to it, creating it if needed.
fn append_to(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// The log's output, for env_logger's `Target::Pipe`: whole lines, to
/// stderr, to the screen once a line editor runs, or to `--log-file`.
#[derive(Clone)]
pub struct LogSink(Arc<Mutex<(LogTarget, Vec<u8>)>>);

impl LogSink {
    /// Logs to stderr, or appends to the file at `path` if given.
    ///
    /// # Errors
    /// Opening the file.
    pub fn new(path: Option<&Path>) -> io::Result<LogSink> {
        let target = match path {
            None => LogTarget::Stderr,
            Some(path) => LogTarget::File(append_to(path)?, path.to_path_buf()),
        };
        Ok(LogSink(Arc::new(Mutex::new((target, Vec::new())))))
    }

    /// Opens the log file again by its path (after logrotate moved it: the
    /// next lines go to a new file there); `None` when the log goes to no
    /// file. On an error the old file is kept.
    pub fn reopen(&self) -> Option<io::Result<PathBuf>> {
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let LogTarget::File(file, path) = &mut sink.0 else {
            return None;
        };
        Some(append_to(path).map(|new| {
            *file = new;
            path.clone()
        }))
    }

    /// Log lines that went to stderr go to `screen` from now on (when it
    /// is the line editor's and stderr is the same terminal).
    pub fn follow_screen(&self, screen: &Screen) {
        let mut sink = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(sink.0, LogTarget::Stderr) && screen.is_editor() && io::stderr().is_terminal() {
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
                LogTarget::File(file, _) => {
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
