//! The command prompt: a line editor (history, editing) when stdin is a
//! terminal, plain lines when it is a pipe. Runs on its own thread; lines
//! go to the event loop, and output comes back through a [`Printer`] that
//! does not break the line being typed.

use std::io::{self, BufRead, IsTerminal, Write};
use std::thread;

use log::warn;
use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};

use crate::reactor::{Outbox, Report};

/// Where the node's output goes.
pub enum Printer {
    Plain,
    Editor(Box<dyn ExternalPrinter + Send>),
}

impl Printer {
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
pub fn spawn(outbox: Outbox) -> Printer {
    if io::stdin().is_terminal() && io::stdout().is_terminal() {
        match DefaultEditor::new() {
            Ok(mut editor) => match editor.create_external_printer() {
                Ok(printer) => {
                    thread::Builder::new()
                        .name("prompt".into())
                        .spawn(move || edit_lines(editor, outbox))
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
        .spawn(move || plain_lines(outbox))
        .expect("spawning the prompt thread");
    Printer::Plain
}

fn edit_lines(mut editor: DefaultEditor, outbox: Outbox) {
    loop {
        match editor.readline("> ") {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if !outbox.command(line.as_bytes()) {
                    return;
                }
            }
            // Ctrl-C at the prompt stops the node, as SIGINT does elsewhere.
            Err(ReadlineError::Interrupted) => {
                outbox.quit();
                return;
            }
            Err(_) => {
                outbox.report(Report::InputClosed);
                return;
            }
        }
    }
}

fn plain_lines(outbox: Outbox) {
    let mut stdin = io::stdin().lock();
    let mut line = Vec::new();
    loop {
        line.clear();
        match stdin.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => {
                outbox.report(Report::InputClosed);
                return;
            }
            Ok(_) => {
                if !outbox.command(&line) {
                    return;
                }
            }
        }
    }
}
