//! The command prompt: a line editor when stdin and stdout are a terminal
//! (editing, command history kept in the data directory, readline habits),
//! plain lines when stdin is a pipe. Runs on its own thread, parses its
//! lines into commands and posts them to the event loop; output comes back
//! through the [`Screen`].
//!
//! At the editor: Ctrl-C clears the line being typed, and on an empty line
//! stops the node, as `quit` does; Ctrl-D on an empty line stops it too.
//! Tab completes command names; Ctrl-Z suspends the node as a shell job,
//! the terminal put back, and `fg` draws the prompt and the line again.
//! Lines typed ahead or pasted several at once are all carried out, in
//! order (the editor keeps what it read beyond a line for the next one).
//! When stdin is a pipe and ends, the node goes on without a prompt.
//!
//! No line is held past [`MAX_LINE`] bytes (a pipe may send a line that
//! never ends), and bytes a terminal sends that are not UTF-8 are refused
//! with a message: neither stops the node.

use std::borrow::Cow;
use std::io::{self, BufRead, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use log::warn;
use rustyline::completion::Completer;
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::FileHistory;
use rustyline::validate::Validator;
use rustyline::{
    Cmd, ConditionalEventHandler, Config, Context, Editor, Event, EventContext, EventHandler,
    Helper, KeyEvent, Movement, RepeatCount,
};

use crate::command::{self, Command};
use crate::inbox::{Mail, Mailer};
use crate::protocol::{self, Origin, StatusBar};
use crate::screen::{EditorState, Screen};

/// Commands kept in the history file.
const HISTORY_SIZE: usize = 1000;
/// The longest line read from a pipe: far more than any command (a chat
/// is at most 255 bytes); the rest of a longer one is skipped.
const MAX_LINE: usize = 4096;

/// Ctrl-C: clear the line, or, on an empty one, interrupt (stop).
struct ClearOrInterrupt;

impl ConditionalEventHandler for ClearOrInterrupt {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, ctx: &EventContext) -> Option<Cmd> {
        Some(if ctx.line().is_empty() {
            Cmd::Interrupt
        } else {
            Cmd::Kill(Movement::WholeLine)
        })
    }
}

/// Ctrl-Z: the terminal is put back as it was, the node stops (as a shell
/// job); on `fg` the editor's mode comes back and the prompt and the line
/// being typed are drawn again.
struct Suspend;

impl ConditionalEventHandler for Suspend {
    fn handle(&self, _: &Event, _: RepeatCount, _: bool, _: &EventContext) -> Option<Cmd> {
        crate::terminal::suspend();
        Some(Cmd::Repaint)
    }
}

/// The editor's helper: Tab completes the command names (`/st` to
/// `/status `), and the prompt shows the node's status as it changes.
struct PromptHelper {
    state: Arc<EditorState>,
}

impl Completer for PromptHelper {
    type Candidate = String;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<String>)> {
        let typed = &line[..pos];
        if !typed.starts_with('/') || typed.contains(' ') {
            return Ok((0, Vec::new()));
        }
        let names = command::NAMES
            .iter()
            .filter(|name| name.starts_with(typed))
            .map(|name| format!("{name} "))
            .collect();
        Ok((0, names))
    }
}

impl Hinter for PromptHelper {
    type Hint = String;
}

/// The editor draws the prompt through this at every refresh (a line
/// printed above it, a key typed): the status of now, made as wide as the
/// prompt the line was read with (the editor measured that one); that
/// prompt when the status of now is wider (a number gained a digit), until
/// the next line.
impl Highlighter for PromptHelper {
    fn highlight_prompt<'b, 's: 'b, 'p: 'b>(
        &'s self,
        prompt: &'p str,
        _default: bool,
    ) -> Cow<'b, str> {
        let now = self.state.prompt();
        match now.strip_suffix("> ") {
            Some(status) if now.len() <= prompt.len() => {
                Cow::Owned(format!("{status:<0$}> ", prompt.len() - 2))
            }
            _ => Cow::Borrowed(prompt),
        }
    }
}
impl Validator for PromptHelper {}
impl Helper for PromptHelper {}

type LineEditor = Editor<PromptHelper, FileHistory>;

/// Columns the status's numbers may grow by while a line is edited: the
/// editor measures the prompt once per line, so a status wider than it
/// could not be drawn until the next line (a history going from 9 to 17
/// chats kept showing 9).
const STATUS_SLACK: usize = 6;

/// The prompt a line is read with: the status, room for it to grow, `> `.
fn with_slack(prompt: String) -> String {
    match prompt.strip_suffix("> ") {
        Some(status) if !status.is_empty() => format!("{status}{}> ", " ".repeat(STATUS_SLACK)),
        _ => prompt,
    }
}

/// Starts reading commands, with the command history in `history_file`
/// when stdin is a terminal, and `status` on the prompt until the node
/// tells another; the screen's lines go above the line being edited from
/// then on.
///
/// # Panics
/// If the prompt thread cannot be spawned.
pub fn spawn(
    mailer: Mailer,
    screen: &Screen,
    history_file: PathBuf,
    status: StatusBar,
) -> thread::JoinHandle<()> {
    if io::stdin().is_terminal() && io::stdout().is_terminal() {
        match editor(&history_file) {
            Ok(mut editor) => match editor.create_external_printer() {
                Ok(printer) => {
                    let state = Arc::new(EditorState::new(status));
                    editor.set_helper(Some(PromptHelper {
                        state: Arc::clone(&state),
                    }));
                    screen.use_editor(Box::new(printer), Arc::clone(&state));
                    return thread::Builder::new()
                        .name("prompt".into())
                        .spawn(move || edit_lines(editor, &history_file, mailer, &state))
                        .expect("spawning the prompt thread");
                }
                Err(e) => warn!("no line editor ({e}); reading plain lines"),
            },
            Err(e) => warn!("no line editor ({e}); reading plain lines"),
        }
    }
    thread::Builder::new()
        .name("prompt".into())
        .spawn(move || plain_lines(mailer))
        .expect("spawning the prompt thread")
}

fn editor(history_file: &Path) -> rustyline::Result<LineEditor> {
    let config = Config::builder()
        .max_history_size(HISTORY_SIZE)?
        .auto_add_history(false)
        .build();
    let mut editor = LineEditor::with_config(config)?;
    editor.bind_sequence(
        KeyEvent::ctrl('C'),
        EventHandler::Conditional(Box::new(ClearOrInterrupt)),
    );
    editor.bind_sequence(
        KeyEvent::ctrl('Z'),
        EventHandler::Conditional(Box::new(Suspend)),
    );
    if let Err(e) = editor.load_history(history_file)
        && !matches!(&e, ReadlineError::Io(io) if io.kind() == io::ErrorKind::NotFound)
    {
        warn!(
            "cannot read the command history {}: {e}",
            history_file.display()
        );
    }
    Ok(editor)
}

/// Parses one line and posts the command (or why it is none); false once
/// no more lines are to be read: the line was `quit` (the editor would
/// draw over the terminal being put back, and piped lines after it are not
/// for this node), or the event loop is gone.
fn post_line(mailer: &Mailer, line: &[u8]) -> bool {
    match command::parse(line) {
        Ok(Some(command)) => {
            let quit = matches!(command, Command::Quit);
            post_command(mailer, command) && !quit
        }
        Ok(None) => true,
        Err(bad) => mailer.post(Mail::Refused(bad.to_string())),
    }
}

fn post_command(mailer: &Mailer, command: Command) -> bool {
    mailer.post(Mail::Event(protocol::Event::Command {
        from: Origin::Prompt,
        command,
    }))
}

/// Replaces the command history file with the editor's history, whole or
/// not at all: written beside it, synced, renamed over it. rustyline's own
/// append writes in place, so a full disk could leave a torn line that the
/// next append joins into a command nobody typed, one Enter from being
/// sent as a chat (issue 18).
fn save_history(editor: &mut LineEditor, history_file: &Path) -> rustyline::Result<()> {
    let tmp = history_file.with_extension("tmp");
    let written = editor.save_history(&tmp).and_then(|()| {
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, history_file)?;
        Ok(())
    });
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

fn edit_lines(mut editor: LineEditor, history_file: &Path, mailer: Mailer, state: &EditorState) {
    loop {
        state.set_reading(true);
        let read = editor.readline(&with_slack(state.prompt()));
        state.set_reading(false);
        match read {
            Ok(line) => {
                if !line.trim().is_empty() {
                    // Written at once, so that a kill loses none of it; a
                    // line the editor did not add (the same as the one
                    // before) changes nothing.
                    let added = editor.add_history_entry(line.as_str()).unwrap_or(false);
                    if added && let Err(e) = save_history(&mut editor, history_file) {
                        warn!(
                            "cannot write the command history {}: {e}",
                            history_file.display()
                        );
                    }
                }
                if !post_line(&mailer, line.as_bytes()) {
                    return;
                }
            }
            Err(ReadlineError::Interrupted | ReadlineError::Eof) => {
                post_command(&mailer, Command::Quit);
                return;
            }
            // A byte that is not UTF-8 (a Latin-1 terminal's 'é'): the
            // line is dropped, the prompt goes on.
            Err(ReadlineError::Io(e)) if e.kind() == io::ErrorKind::InvalidData => {
                let refused = "the terminal sent bytes that are not UTF-8; the line is dropped \
                               (only printable ASCII can be sent)";
                if !mailer.post(Mail::Refused(refused.into())) {
                    return;
                }
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
        let read = (&mut stdin)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line);
        match read {
            Ok(0) | Err(_) => {
                mailer.post(Mail::InputEnded);
                return;
            }
            Ok(n) if n > MAX_LINE && line.last() != Some(&b'\n') => {
                let refused = format!("a line longer than {MAX_LINE} bytes; skipped");
                if !mailer.post(Mail::Refused(refused)) || !skip_line(&mut stdin) {
                    mailer.post(Mail::InputEnded);
                    return;
                }
            }
            Ok(_) => {
                if !post_line(&mailer, &line) {
                    return;
                }
            }
        }
    }
}

/// Reads and drops the rest of a line, in bounded pieces; false when the
/// input ended first.
fn skip_line(input: &mut impl BufRead) -> bool {
    loop {
        let Ok(buf) = input.fill_buf() else {
            return false;
        };
        if buf.is_empty() {
            return false;
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                input.consume(end + 1);
                return true;
            }
            None => {
                let all = buf.len();
                input.consume(all);
            }
        }
    }
}
