//! The command line as a newcomer meets it: the program's second name
//! (`chatchain`), `-h`, `--help`, `--version`, completions and the manual
//! page, errors that say what to do, and a piped `quit` that waits for the
//! chat just typed. Each test on its own `127.9.T.x` addresses and port
//! (see `support`).

use std::path::Path;
use std::process::Output;
use std::time::Duration;

use crate::support::{
    Net, WAIT, chatchain_command, run_command, run_with_input, shared_cpu, temp_dir,
};

/// This module's id in the address plan of `support`.
const FILE: u8 = 9;

/// Runs `chatchain ARGS` with stdin closed, bounded by [`WAIT`].
fn chatchain(args: &[&str]) -> Output {
    let mut command = chatchain_command();
    command.args(args);
    run_command(command, b"", WAIT)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The node's flags for test `test`, host 1, data in `dir`.
fn node_args(net: &Net, dir: &Path) -> Vec<String> {
    vec![
        "--bind".into(),
        net.addr(1).to_string(),
        "--port".into(),
        net.port().to_string(),
        "--data-dir".into(),
        dir.display().to_string(),
        "--threads".into(),
        "1".into(),
    ]
}

#[test]
fn chatchain_is_the_same_program_and_its_help_is_short_then_long() {
    let _cpu = shared_cpu();
    let short = chatchain(&["-h"]);
    let out = text(&short.stdout);
    assert_eq!(short.status.code(), Some(0), "{out}");
    assert!(
        out.starts_with("A peer of the blockchain chat network\n"),
        "{out}"
    );
    assert!(
        out.contains("Usage: chatchain") && out.contains("chatchain --peer 192.168.1.10"),
        "{out}"
    );
    assert!(!out.contains("--max-inbound"), "{out}");
    // One line per subcommand (21 of them since the operator's commands
    // and the page's url) and per common flag, three examples.
    assert!(
        out.lines().count() <= 48,
        "{} lines:\n{out}",
        out.lines().count()
    );
    let long = text(&chatchain(&["--help"]).stdout);
    assert!(
        long.contains("--max-inbound") && long.contains("--bind 127.0.0.2"),
        "{long}"
    );
    assert!(long.lines().count() > out.lines().count());
    let version = text(&chatchain(&["--version"]).stdout);
    assert!(
        version.starts_with("chatchain 0.") && version.contains(" (commit "),
        "{version}"
    );
    let bash = chatchain(&["completions", "bash"]);
    assert_eq!(bash.status.code(), Some(0));
    assert!(text(&bash.stdout).contains("_chatchain()"));
    let man = chatchain(&["manpage"]);
    assert_eq!(man.status.code(), Some(0));
    assert!(
        text(&man.stdout).starts_with(".ie"),
        "{}",
        text(&man.stdout)
    );
    assert!(text(&man.stdout).contains(".TH chatchain"));
}

/// `chat x` then `quit` on a pipe: the node waits for the chat to be mined
/// and saved, then stops (it took a millisecond; the node said "mined at
/// the next start").
#[test]
fn a_piped_quit_waits_for_the_chat_typed_before_it() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 1);
    let dir = temp_dir("node-cli-");
    let out = run_with_input(
        node_args(&net, dir.path()),
        b"chat x\nquit\n",
        Duration::from_secs(60),
    );
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.lines().any(|l| l.starts_with("#0 x (mined: ")),
        "{stdout}"
    );
    assert!(!stdout.contains("not mined yet"), "{stdout}");
    // Offline, the grammar of one.
    let status = chatchain(&["status", "--data-dir", &dir.path().display().to_string()]);
    let said = text(&status.stdout);
    assert!(
        said.contains("history:   1 chat, last \"x\"") && said.contains("pending:   0 chats"),
        "{said}"
    );
}

/// Each mistake a newcomer makes names the fix.
#[test]
fn errors_name_the_fix() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 2);
    // A peer with a port other than the network's.
    let out = chatchain(&["--peer", "127.0.0.1:4000"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("one port") && err.contains("--port 4000"),
        "{err}"
    );

    // A second node on the same address: what to do, and no directory left.
    let dir = temp_dir("node-cli-");
    let _taken = std::net::TcpListener::bind((net.addr(1), net.port())).expect("the port");
    let fresh = dir.path().join("never-made");
    let mut args = node_args(&net, &fresh);
    args.truncate(6);
    let out = run_with_input(&args, b"", WAIT);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("another program holds that port") && err.contains("--bind 127.0.0.2"),
        "{err}"
    );
    assert!(!fresh.exists(), "a failed start left {}", fresh.display());

    // A data directory whose path is too long for its control socket.
    let long = dir.path().join("d".repeat(120));
    let out = chatchain(&["status", "--data-dir", &long.display().to_string()]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a bad argument: {err}");
    assert!(
        err.contains("at most 107") && err.contains("shorter"),
        "{err}"
    );

    // A chat beginning with '-' is not '-h': refused, naming '--'.
    let out = chatchain(&[
        "chat",
        "-hello",
        "--data-dir",
        &dir.path().display().to_string(),
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("-- -hello"), "{err}");

    // A file that is no history.
    let out = chatchain(&["verify", "/etc/passwd"]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("not a history file"), "{err}");
}

/// `--bind localhost` works as `--peer localhost` does.
#[test]
fn bind_takes_a_host_name() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 3);
    let dir = temp_dir("node-cli-");
    let port = net.port().to_string();
    let data = dir.path().display().to_string();
    let mut command = chatchain_command();
    command.args([
        "--bind",
        "localhost",
        "--port",
        &port,
        "--data-dir",
        &data,
        "--threads",
        "1",
    ]);
    let out = run_command(command, b"quit\n", WAIT);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.starts_with(&format!("listening on 127.0.0.1:{port};")),
        "{stdout}"
    );
}
