//! The command prompt: a line editor (history, editing) when stdin is a
//! terminal, plain lines when it is a pipe. Runs on its own thread, parses
//! its lines into commands and posts them to the event loop; output comes
//! back through a [`Printer`] that does not break the line being typed.

use std::io::{self, BufRead, IsTerminal, Write};
use std::thread;

use log::warn;
use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};

use crate::command::{self, Command};
use crate::inbox::{Mail, Mailer};
use crate::protocol::{Event, Origin};

/// Where the node's output goes.
pub enum Printer {
    /// Plain lines on stdout.
    Plain,
    /// Above the line being edited.
    Editor(Box<dyn ExternalPrinter + Send>),
}

impl Printer {
    /// Prints `text` (one or more lines).
    pub fn print(&mut self, text: &str) {
        match self {
            Printer::Plain => {
                let mut out = io::stdout().lock();
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
            Printer::Editor(printer) => {
                if printer.print(format!("{text}\n")).is_err() {
                    *self = Printer::Plain;
                    self.print(text);
                }
            }
        }
    }
}

/// Starts reading commands; returns the printer for the node's output.
///
/// # Panics
/// If the prompt thread cannot be spawned.
pub fn spawn(mailer: Mailer) -> Printer {
    if io::stdin().is_terminal() && io::stdout().is_terminal() {
        match DefaultEditor::new() {
            Ok(mut editor) => match editor.create_external_printer() {
                Ok(printer) => {
                    thread::Builder::new()
                        .name("prompt".into())
                        .spawn(move || edit_lines(editor, mailer))
                        .expect("spawning the prompt thread");
                    return Printer::Editor(Box::new(printer));
                }
                Err(e) => warn!("no line editor ({e}); reading plain lines"),
            },
            Err(e) => warn!("no line editor ({e}); reading plain lines"),
        }
    }
    thread::Builder::new()
        .name("prompt".into())
        .spawn(move || plain_lines(mailer))
        .expect("spawning the prompt thread");
    Printer::Plain
}

/// Parses one line and posts the command (or why it is none); false once
/// the event loop is gone.
fn post_line(mailer: &Mailer, line: &[u8]) -> bool {
    match command::parse(line) {
        Ok(Some(command)) => post_command(mailer, command),
        Ok(None) => true,
        Err(bad) => mailer.post(Mail::Refused(bad.to_string())),
    }
}

fn post_command(mailer: &Mailer, command: Command) -> bool {
    mailer.post(Mail::Event(Event::Command {
        from: Origin::Prompt,
        command,
    }))
}

fn edit_lines(mut editor: DefaultEditor, mailer: Mailer) {
    loop {
        match editor.readline("> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if !post_line(&mailer, line.as_bytes()) {
                    return;
                }
            }
            // Ctrl-C and Ctrl-D at the prompt stop the node.
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                post_command(&mailer, Command::Quit);
                return;
            }
            Err(_) => {
                mailer.post(Mail::Hangup);
                return;
            }
        }
    }
}

fn plain_lines(mailer: Mailer) {
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => {
                mailer.post(Mail::InputEnded);
                return;
            }
            Ok(_) => {
                if !post_line(&mailer, &line) {
                    return;
                }
            }
        }
    }
}
