//! The terminal's mode, saved at start and put back on every way out: a
//! clean stop, a fatal error, a panic. The line editor switches the
//! terminal to raw mode while it reads a line; a node that stops while a
//! line is being read would otherwise leave the shell without echo.

use std::io::{self, IsTerminal, Write};
use std::sync::OnceLock;

/// The mode stdin's terminal had when the node started.
static SAVED: OnceLock<libc::termios> = OnceLock::new();

/// Puts the terminal back when dropped.
pub struct TerminalGuard {
    _private: (),
}

impl TerminalGuard {
    /// Saves stdin's terminal mode (if stdin is a terminal) and makes
    /// panics put it back too.
    pub fn save() -> TerminalGuard {
        if io::stdin().is_terminal() {
            // SAFETY: termios is plain data; tcgetattr fills it or fails.
            let mut mode: libc::termios = unsafe { std::mem::zeroed() };
            // SAFETY: fd 0 is open (it is a terminal); `mode` is valid.
            if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut mode) } == 0 {
                let _ = SAVED.set(mode);
                let default_hook = std::panic::take_hook();
                std::panic::set_hook(Box::new(move |info| {
                    restore();
                    default_hook(info);
                }));
            }
        }
        TerminalGuard { _private: () }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Suspends the node as a shell job (Ctrl-Z at the line editor, which
/// reads keys in raw mode, so the terminal sends no SIGTSTP itself): the
/// terminal is put back as it was at start, the process stops (SIGTSTP,
/// default action); once continued (`fg`), the editor's mode comes back.
/// The editor then draws its prompt and line again.
pub fn suspend() {
    // SAFETY: termios is plain data; tcgetattr fills it or fails.
    let mut editing: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: fd 0 is the editor's terminal; `editing` is valid.
    let saved = unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut editing) } == 0;
    restore();
    // SAFETY: raise(3) sends SIGTSTP to this thread: the process stops
    // before raise returns, and goes on at SIGCONT.
    unsafe {
        libc::raise(libc::SIGTSTP);
    }
    if saved {
        // SAFETY: as above; `editing` was read from this terminal.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, &editing);
        }
        // Bracketed paste, as the editor had it.
        let _ = io::stdout().write_all(b"\x1b[?2004h");
        let _ = io::stdout().flush();
    }
}

/// Puts the saved mode back, and the cursor at the start of a clean line
/// (the editor's prompt may be on the screen).
fn restore() {
    if let Some(mode) = SAVED.get() {
        // SAFETY: fd 0 was a terminal when `mode` was read from it.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSADRAIN, mode);
        }
        if io::stdout().is_terminal() {
            // Bracketed paste and a synchronized update the editor may have
            // left on, then the start of a clean line.
            let _ = io::stdout().write_all(b"\x1b[?2004l\x1b[?2026l\r\x1b[K");
            let _ = io::stdout().flush();
        }
    }
}
