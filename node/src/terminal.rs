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
