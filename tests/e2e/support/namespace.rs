//! A private network namespace for what must not touch the machine's own
//! network (nftables rules, a qdisc on `lo`, a node bound to 0.0.0.0): the
//! running binary (a test binary or a bench) is run again under `unshare
//! --net --mount`, told by the environment which inner part to run; that
//! inner part checks it is where it should be and brings up the
//! namespace's loopback, the only interface there. Everything then runs on
//! 127.0.0.0/8 inside.
//!
//! Used by `partition.rs` (its inner tests) and `benches/relay.rs` (links
//! shaped with `tc`).

use std::env;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use super::{WAIT, poll};

/// Set by the outer process, to the name of the inner part it runs in a
/// network namespace.
const INNER: &str = "NAMESPACE_INNER";
/// Set by the outer process, to its own network namespace (the link
/// `/proc/self/ns/net`): the one the inner part must not be in.
const OUTER_NS: &str = "NAMESPACE_OUTER_NETNS";

/// Why this cannot run in a namespace here, if it cannot: `euid` must be
/// 0, and each of `tools` (a program and the package that has it) must be
/// on `path` (a PATH value).
pub fn missing(euid: u32, path: &OsStr, tools: &[(&str, &str)]) -> Option<String> {
    if euid != 0 {
        return Some(format!(
            "not running as root (euid {euid}); a network namespace and nftables need it"
        ));
    }
    tools
        .iter()
        .find(|(tool, _)| !on_path(path, tool))
        .map(|(tool, package)| format!("{tool} not found (apt-get install {package})"))
}

/// [`missing`] for this process: its effective user and its PATH.
pub fn missing_here(tools: &[(&str, &str)]) -> Option<String> {
    // SAFETY: geteuid(2) cannot fail and touches no memory.
    let euid = unsafe { libc::geteuid() };
    missing(euid, &env::var_os("PATH").unwrap_or_default(), tools)
}

/// Whether an executable file named `tool` is in a directory of `path`.
fn on_path(path: &OsStr, tool: &str) -> bool {
    env::split_paths(path).any(|dir| {
        fs::metadata(dir.join(tool))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

/// This binary again with `args`, in a new network namespace and a
/// private mount namespace (`unshare --net --mount`), told that it is the
/// inner part `inner`; it dies with this process. The caller sets its
/// standard streams and runs it.
pub fn command(args: &[&str], inner: &str) -> Command {
    let exe = env::current_exe().expect("this binary's path");
    let mut command = Command::new("unshare");
    command
        .args(["--net", "--mount"])
        .arg("--")
        .arg(&exe)
        .args(args)
        .env(INNER, inner)
        .env(OUTER_NS, network_namespace())
        .stdin(Stdio::null());
    // The inner process (unshare execs it) dies with this process, and its
    // nodes with it.
    // SAFETY: prctl(2) only; async-signal-safe in the forked child.
    unsafe {
        command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    command
}

/// The inner part this process was started to run by [`command`], if it
/// was.
pub fn inner() -> Option<String> {
    env::var(INNER).ok()
}

/// Checks that this process is the inner part `name` started by
/// [`command`], in a network namespace other than its starter's (else
/// panics: what runs inside is for a private namespace only), then brings
/// up the namespace's loopback. `outer` names what starts it, for the
/// message.
pub fn enter(name: &str, outer: &str) {
    assert_eq!(
        inner().unwrap_or_default(),
        name,
        "{name} runs only inside a network namespace of its own, started by {outer} \
         (which sets {INNER}={name})"
    );
    let outer_ns = env::var_os(OUTER_NS).unwrap_or_default();
    assert!(
        !outer_ns.is_empty() && network_namespace() != outer_ns,
        "{name}: this process is in the network namespace of the process that started it \
         ({outer_ns:?}), not in one of its own"
    );
    run("ip", &["link", "set", "lo", "up"]);
}

/// This process's network namespace, as `/proc/self/ns/net` names it
/// (`net:[4026531840]`).
fn network_namespace() -> OsString {
    fs::read_link("/proc/self/ns/net")
        .expect("reading /proc/self/ns/net")
        .into_os_string()
}

/// Runs a tool (bounded by [`WAIT`]) and returns its stdout; panics with
/// its stderr when it fails.
pub fn run(tool: &str, args: &[&str]) -> String {
    try_run(tool, args, "").unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a tool (bounded by [`WAIT`]) with `input` on its stdin: its
/// stdout, or why it failed (its status and stderr).
pub fn try_run(tool: &str, args: &[&str], input: &str) -> Result<String, String> {
    let mut child = Command::new(tool)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting {tool}: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(input.as_bytes())
        .map_err(|e| format!("writing to {tool}: {e}"))?;
    drop(stdin);
    let waited = poll(WAIT, || child.try_wait().expect("waiting for a tool"));
    if waited.is_none() {
        let _ = child.kill();
    }
    let output = child.wait_with_output().expect("reading a tool's output");
    if waited.is_some() && output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let input = if input.is_empty() {
            String::new()
        } else {
            format!("\n{input}")
        };
        Err(format!(
            "{tool} {args:?} ({}): {}{input}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ))
    }
}

/// Applies an nftables script.
pub fn nft(script: &str) {
    try_run("nft", &["-f", "-"], script).unwrap_or_else(|e| panic!("{e}"));
}
