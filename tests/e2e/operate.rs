//! Operating a node as bitcoind and bitcoin-cli let one (issue 21): the
//! client's exit statuses for a node that is not ours, not running, or
//! not answering (two users); `stop`, `connect`, `disconnect`, `ban`,
//! `unban`, `bans`, `log`, `metrics`; `chat --wait`; status's pid, uptime
//! and version, the lock file's pid, `--wait-start`; the configuration
//! file and the environment; SIGHUP and `--log-file`. Everything through
//! the control socket and the `node` binary.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use wire::Message;

use crate::control::{client, json};
use crate::support::{Net, Node, WAIT, client_output, node_command, poll, shared_cpu};

const FILE: u8 = 10;

/// The second user of the two-user test, and its group.
const NOBODY: u32 = 65534;

/// `node ARGS --data-dir DIR` as user [`NOBODY`].
fn client_as_nobody(node: &Node, args: &[&str]) -> (Option<i32>, String, String) {
    use std::os::unix::process::CommandExt;
    let mut command = node_command();
    command
        .args(args)
        .arg("--data-dir")
        .arg(node.data_dir())
        .uid(NOBODY)
        .gid(NOBODY);
    client_output(&mut command, WAIT)
}

#[test]
fn a_node_of_another_user_is_not_said_to_be_down() {
    let _cpu = shared_cpu();
    // SAFETY: geteuid(2) reads the process's own id.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: the two-user test runs the client as uid {NOBODY}, which needs root");
        return;
    }
    let net = Net::new(FILE, 0);
    let node = net.node(1, &[]);
    // The node's directories may be passed through by anyone: only the
    // socket (mode 0600) keeps the other user out.
    let data = node.data_dir();
    for dir in [data.parent().expect("a parent"), &data] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    eprintln!("running as root (uid 0); the client as uid {NOBODY}");
    let (code, out, err) = client_as_nobody(&node, &["status"]);
    assert_eq!((code, out.as_str()), (Some(4), ""), "{err}");
    assert!(
        err.contains("belongs to user root (uid 0), and only its owner may use it")
            && err.contains("sudo -u root chatchain"),
        "{err}"
    );
    let (code, out, _) = client_as_nobody(&node, &["status", "--json"]);
    assert_eq!(code, Some(4));
    let answer = json(&out);
    assert_eq!(
        (&answer["reply"], &answer["kind"]),
        (&"error".into(), &"not_ours".into())
    );
    let (code, _, err) = client_as_nobody(&node, &["chat", "hello"]);
    assert_eq!(code, Some(4), "{err}");
    assert!(!err.contains("no node is running"), "{err}");
    // Its owner is answered.
    assert_eq!(client(&node, &["status"]).0, Some(0));
    // Down, the node is said to be down, to both users, by exit status 3.
    let mut node = node;
    node.sigterm();
    let (code, out, _) = client(&node, &["status"]);
    assert_eq!(code, Some(3), "{out}");
    let (code, out, _) = client_as_nobody(&node, &["peers", "--json"]);
    assert_eq!(
        (code, &json(&out)["kind"]),
        (Some(3), &"not_running".into())
    );
}

#[test]
fn connect_disconnect_ban_unban_and_stop_manage_a_running_node() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 1);
    let mut a = net.node(1, &[]);
    let b = net.node(2, &[]);
    let b_addr = b.addr.to_string();
    // The lock file holds the pid.
    let lock = fs::read_to_string(a.data_dir().join("lock")).expect("the lock file");
    assert_eq!(lock.trim(), a.pid().expect("running").to_string());

    let (code, out, err) = client(&a, &["connect", &b_addr]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with(&format!("connecting to {b_addr}")), "{out}");
    assert!(poll(WAIT, || a.peer_addrs().contains(&b.addr).then_some(())).is_some());
    let (code, out, _) = client(&a, &["disconnect", &b_addr]);
    assert_eq!(
        (code, out.trim()),
        (
            Some(0),
            &*format!("disconnecting {b_addr} (1 connection(s))")
        )
    );
    let (code, out, _) = client(&a, &["disconnect", "127.10.1.99"]);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("no connection with 127.10.1.99"), "{out}");

    // Banned: closed, and B's dials back are closed at once, for as long
    // as the ban lasts; nor is B named in A's PeerLists.
    let (code, out, _) = client(&a, &["connect", &b_addr]);
    assert_eq!(code, Some(0), "{out}");
    assert!(poll(WAIT, || a.peer_addrs().contains(&b.addr).then_some(())).is_some());
    let (code, out, _) = client(&a, &["ban", &b_addr, "1h"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.starts_with(&format!("banned {b_addr} for 1h00m")),
        "{out}"
    );
    let gone = poll(WAIT, || (!a.peer_addrs().contains(&b.addr)).then_some(()));
    assert!(gone.is_some(), "the banned peer is still connected");
    b.ask(&serde_json::json!({"command": "connect", "addr": a.addr.to_string()}));
    let mut third = net.peer(100, 1);
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        assert!(!a.peer_addrs().contains(&b.addr), "a banned peer was kept");
        third.send(&Message::PeerRequest);
        let list = third.recv_until(WAIT, |m| matches!(m, Message::PeerList(_)));
        if let Some((Message::PeerList(addrs), _)) = list {
            assert!(
                !addrs.contains(&b.addr),
                "a banned address passed on: {addrs:?}"
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
    let (code, out, _) = client(&a, &["bans", "--json"]);
    assert_eq!(code, Some(0));
    let bans = json(&out);
    assert_eq!(bans["bans"][0]["addr"], b_addr.as_str(), "{bans}");
    assert!(bans["bans"][0]["expires_in_s"].as_f64().expect("an end") > 3500.0);
    let (code, out, _) = client(&a, &["ban", &b_addr, "soon"]);
    assert_eq!(code, Some(2), "{out}");

    // Across a restart, from the data directory.
    a.sigterm();
    a.restart();
    let (_, out, _) = client(&a, &["bans"]);
    assert!(
        out.starts_with(&format!("{b_addr} ")) && out.contains("left"),
        "{out}"
    );
    let (code, out, _) = client(&a, &["unban", &b_addr]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), &*format!("{b_addr} is no longer banned"))
    );
    let (code, out, _) = client(&a, &["unban", &b_addr]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(client(&a, &["bans"]).1.trim(), "no address is banned");
    let (code, out, _) = client(&a, &["connect", &b_addr]);
    assert_eq!(code, Some(0), "{out}");
    assert!(poll(WAIT, || a.peer_addrs().contains(&b.addr).then_some(())).is_some());

    // `stop`: answered once the node has stopped, cleanly.
    let (code, out, err) = client(&a, &["stop", "--json"]);
    assert_eq!(
        (code, json(&out)),
        (Some(0), serde_json::json!({"reply": "stopped"})),
        "{err}"
    );
    let status = a.wait_exit(WAIT).expect("stopped");
    assert!(status.success(), "{status:?}");
    assert!(
        a.stdout()
            .iter()
            .any(|l| l.starts_with("stopped; the history is saved"))
    );
}

#[test]
fn a_chat_from_a_script_says_where_it_landed() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 2);
    let mut a = net.node(1, &[]);
    let (code, out, err) = client(&a, &["chat", "--wait", "mined", "--json", "first one"]);
    assert_eq!(code, Some(0), "{err}");
    let mined = json(&out);
    assert_eq!(
        (&mined["reply"], &mined["index"]),
        (&"mined".into(), &0.into()),
        "{mined}"
    );
    let digest = mined["digest"].as_str().expect("a digest");
    assert!(digest.len() == 32 && digest.starts_with("0000"), "{digest}");
    // No peer: never sent; the bound passes, with its own exit status.
    let started = Instant::now();
    let (code, out, err) = client(&a, &["chat", "--wait", "sent", "--timeout", "1", "alone"]);
    assert_eq!((code, out.as_str()), (Some(6), ""), "{err}");
    assert!(
        err.contains("the chat was not sent to a peer within 1 s"),
        "{err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // With a peer, sent.
    let b = net.node(2, &["--peer", &a.addr.to_string()]);
    assert!(poll(WAIT, || (a.status()["peers"] == 1).then_some(())).is_some());
    let (code, out, err) = client(&a, &["chat", "--wait", "sent", "to b"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("sent to a peer as #2 (digest "), "{out}");
    drop(b);
}

#[test]
fn status_log_level_and_waiting_for_a_starting_node() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 3);
    let mut a = net.node(1, &["--log", "warn"]);
    let status = a.status();
    assert_eq!(status["pid"], a.pid().expect("running"));
    assert_eq!(status["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        status["uptime_s"].as_f64().is_some_and(|s| s >= 0.0),
        "{status}"
    );
    let (_, out, _) = client(&a, &["status"]);
    assert!(
        out.contains(&format!("pid {}", a.pid().expect("running"))),
        "{out}"
    );

    // The log level of the running node: debug lines once raised.
    client(&a, &["connect", "127.10.3.50"]);
    thread::sleep(Duration::from_millis(300));
    assert!(!a.stderr().contains("DEBUG"), "{}", a.stderr());
    let (code, out, _) = client(&a, &["log", "debug"]);
    assert_eq!((code, out.trim()), (Some(0), "log level: debug"));
    client(&a, &["connect", "127.10.3.51"]);
    let debug = poll(WAIT, || a.stderr().contains("DEBUG").then_some(()));
    assert!(debug.is_some(), "{}", a.stderr());
    let (code, _, err) = client(&a, &["log", "loud"]);
    assert_eq!(code, Some(2), "{err}");

    // Stopped: exit status 3 at once; with --wait-start, the client waits
    // for the node to come back, and is answered.
    a.sigterm();
    let started = Instant::now();
    assert_eq!(client(&a, &["peers"]).0, Some(3));
    assert!(started.elapsed() < Duration::from_secs(5));
    let mut waiting = node_command()
        .args(["peers", "--json", "--wait-start=20", "--data-dir"])
        .arg(a.data_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("a client");
    thread::sleep(Duration::from_millis(500));
    assert!(
        waiting.try_wait().expect("waiting").is_none(),
        "it did not wait"
    );
    a.restart();
    let done = poll(WAIT, || waiting.try_wait().expect("waiting"));
    let status = done.expect("answered once the node started");
    assert!(status.success(), "{status:?}");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut waiting.stdout.take().expect("stdout"), &mut out)
        .expect("the answer");
    assert_eq!(json(&out)["reply"], "peers", "{out}");
    // A bounded wait: past it, not running.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let started = Instant::now();
    let (code, _, _) = client_output(
        node_command()
            .args(["status", "--wait-start=1", "--data-dir"])
            .arg(dir.path()),
        WAIT,
    );
    assert_eq!(code, Some(3));
    assert!(started.elapsed() >= Duration::from_secs(1));
}

/// `node ARGS` with `env` set, no inherited `CHATCHAIN_` or `NODE_LOG`.
fn with_env(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command: Command = node_command();
    for (key, _) in std::env::vars() {
        if key.starts_with("CHATCHAIN_") || key == "NODE_LOG" {
            command.env_remove(key);
        }
    }
    command.args(args).envs(env.iter().copied());
    client_output(&mut command, WAIT)
}

/// The lines of `node config`, by setting: (value, source).
fn settings(out: &str) -> Vec<(String, String, String)> {
    let config: Value = json(out);
    config["settings"]
        .as_array()
        .expect("settings")
        .iter()
        .map(|s| {
            let field = |k: &str| s[k].as_str().unwrap_or_default().to_string();
            (field("name"), field("value"), field("source"))
        })
        .collect()
}

#[test]
fn settings_come_from_flags_then_environment_then_file_then_defaults() {
    let _cpu = shared_cpu();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let data = dir.path().display().to_string();
    let file = dir.path().join("chatchain.toml");
    fs::write(
        &file,
        "port = 47999\nlog = \"info\"\nmax-inbound = 7\npeer = [\"127.10.4.9\"]\n",
    )
    .expect("the file");
    let (code, out, err) = with_env(
        &["--port", "47998", "config", "--json", "--data-dir", &data],
        &[("CHATCHAIN_LOG", "debug"), ("CHATCHAIN_MAX_INBOUND", "9")],
    );
    assert_eq!(code, Some(0), "{err}");
    let all = settings(&out);
    let of = |name: &str| {
        all.iter()
            .find(|(n, ..)| n == name)
            .map(|(_, v, s)| (v.clone(), s.clone()))
            .unwrap_or_else(|| panic!("{name} missing: {all:?}"))
    };
    let at = |line| format!("file {}:{line}", file.display());
    assert_eq!(of("port"), ("47998".into(), "flag".into()));
    assert_eq!(of("log"), ("debug".into(), "env CHATCHAIN_LOG".into()));
    assert_eq!(
        of("max-inbound"),
        ("9".into(), "env CHATCHAIN_MAX_INBOUND".into())
    );
    assert_eq!(of("peer"), ("127.10.4.9".into(), at(4)));
    assert_eq!(of("max-connecting"), ("16".into(), "default".into()));
    assert_eq!(of("data-dir"), (data.clone(), "flag".into()));
    // NODE_LOG, the older name, still counts.
    let (_, out, _) = with_env(
        &["config", "--json", "--data-dir", &data],
        &[("NODE_LOG", "trace")],
    );
    assert_eq!(
        settings(&out)
            .iter()
            .find(|s| s.0 == "log")
            .map(|s| s.1.as_str()),
        Some("trace")
    );
    let (_, out, _) = with_env(&["config", "--json", "--data-dir", &data], &[]);
    assert!(
        settings(&out).contains(&("log".into(), "info".into(), at(2))),
        "{out}"
    );

    // A bad file is refused with its path, the line and the key.
    for (text, line, key, why) in [
        ("port = 5\nprot = 6\n", 2, "prot", "no such setting"),
        ("\n\nport = \"abc\"\n", 3, "port", "invalid value 'abc'"),
        ("log = true\n", 1, "log", "invalid value 'true'"),
        (
            "no-relay = \"yes\"\n",
            1,
            "no-relay",
            "a switch takes true or false",
        ),
        (
            "port = { a = 1 }\n",
            1,
            "port",
            "a value is a string, a number or true/false",
        ),
    ] {
        fs::write(&file, text).expect("the file");
        let (code, _, err) = with_env(&["status", "--data-dir", &data], &[]);
        assert_eq!(code, Some(2), "{err}");
        let want = format!(
            "configuration file {}, line {line}, key '{key}': ",
            file.display()
        );
        assert!(err.contains(&want) && err.contains(why), "{text:?}: {err}");
    }
    fs::write(&file, "port = [1\n").expect("the file");
    let (code, _, err) = with_env(&["status", "--data-dir", &data], &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!(
            "configuration file {}, line 1: not TOML",
            file.display()
        )),
        "{err}"
    );

    // The clients find a node by the same rules: the environment, or a
    // file named by --config.
    fs::remove_file(&file).expect("removed");
    let net = Net::new(FILE, 4);
    let node = net.node(1, &[]);
    let node_dir = node.data_dir().display().to_string();
    let (code, out, err) = with_env(&["status", "--json"], &[("CHATCHAIN_DATA_DIR", &node_dir)]);
    assert_eq!(
        (code, &json(&out)["reply"]),
        (Some(0), &"status".into()),
        "{err}"
    );
    let named = dir.path().join("elsewhere.toml");
    fs::write(&named, format!("data-dir = \"{node_dir}\"\n")).expect("the file");
    let (code, out, err) = with_env(
        &["peers", "--json", "--config", &named.display().to_string()],
        &[],
    );
    assert_eq!(
        (code, &json(&out)["reply"]),
        (Some(0), &"peers".into()),
        "{err}"
    );
}

#[test]
fn sighup_opens_the_log_file_again_for_logrotate() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 5);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let log = dir.path().join("node.log");
    let rotated = dir.path().join("node.log.1");
    let log_arg = log.display().to_string();
    let a = net.node(1, &["--log", "debug", "--log-file", &log_arg]);
    client(&a, &["connect", "127.10.5.50"]);
    let read = |path: &std::path::Path| fs::read_to_string(path).unwrap_or_default();
    assert!(poll(WAIT, || read(&log).contains("127.10.5.50").then_some(())).is_some());
    // As logrotate does: move the file, then signal the node.
    fs::rename(&log, &rotated).expect("rotated");
    a.signal(libc::SIGHUP);
    let reopened = poll(WAIT, || read(&log).contains("opened again").then_some(()));
    assert!(reopened.is_some(), "no new log file: {}", read(&rotated));
    client(&a, &["connect", "127.10.5.51"]);
    assert!(poll(WAIT, || read(&log).contains("127.10.5.51").then_some(())).is_some());
    assert!(
        !read(&rotated).contains("127.10.5.51"),
        "{}",
        read(&rotated)
    );
    // Still running.
    assert_eq!(client(&a, &["status"]).0, Some(0));
}

/// Parses OpenMetrics text with Python's prometheus_client, both its
/// reference Prometheus parser and its OpenMetrics one: each sample as
/// `[name, labels, value]`; `None` when python3 or the library is missing.
fn parse_metrics(text: &str) -> Option<Vec<(String, Value, f64)>> {
    const SCRIPT: &str = "import json, sys\n\
        from prometheus_client.parser import text_string_to_metric_families as prom\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families as om\n\
        text = sys.stdin.read()\n\
        assert sum(len(f.samples) for f in om(text)) > 0\n\
        print(json.dumps([[s.name, s.labels, s.value] for f in prom(text) for s in f.samples]))\n";
    let probe = Command::new("python3")
        .args(["-c", "import prometheus_client"])
        .stderr(Stdio::null())
        .status();
    if !probe.is_ok_and(|s| s.success()) {
        return None;
    }
    let mut child = Command::new("python3")
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("the text to the parser");
    let out = child.wait_with_output().expect("the parser's answer");
    assert!(
        out.status.success(),
        "the parser refused the text: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<(String, Value, f64)> =
        serde_json::from_slice(&out.stdout).expect("the parser's JSON");
    Some(samples)
}

/// The value of sample `name` with `labels` (a subset) in `samples`.
fn sample(samples: &[(String, Value, f64)], name: &str, labels: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && labels.iter().all(|(k, v)| l[*k] == *v))
        .map(|s| s.2)
        .unwrap_or_else(|| panic!("no {name} {labels:?} in {samples:?}"))
}

#[test]
fn metrics_move_as_chats_flow_and_parse_with_the_reference_parser() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 6);
    let mut a = net.node(1, &[]);
    let mut b = net.node(2, &["--peer", &a.addr.to_string()]);
    assert!(poll(WAIT, || (a.status()["peers"] == 1).then_some(())).is_some());
    let scrape = |node: &Node| {
        let answer = node.ask(&serde_json::json!({"command": "metrics"}));
        assert_eq!(answer["reply"], "metrics", "{answer}");
        answer["text"].as_str().expect("the text").to_string()
    };
    let first = scrape(&a);
    assert!(first.ends_with("# EOF\n"), "{first}");
    let Some(before) = parse_metrics(&first) else {
        eprintln!(
            "skipped: the parse needs python3 with prometheus_client (pip install \
             prometheus-client; .ci/run installs it)"
        );
        return;
    };
    // A peer pushes 1,000 chats (validated on the worker thread), then A
    // mines 3 on top, which B takes from A.
    net.peer(100, 1)
        .send_raw(&crate::support::fixture_bytes("history-1k.bin"));
    assert!(a.wait_history_len(1000), "a did not take the archive");
    for i in 0..3 {
        let (code, _, err) = client(&a, &["chat", "--wait", "mined", &format!("metric {i}")]);
        assert_eq!(code, Some(0), "{err}");
    }
    assert!(b.wait_history_len(1003), "b did not get the chats");
    let after = parse_metrics(&scrape(&a)).expect("parsed before");
    let grew = |name: &str, labels: &[(&str, &str)], by: f64| {
        let (was, is) = (sample(&before, name, labels), sample(&after, name, labels));
        assert!(is >= was + by, "{name} {labels:?}: {was} then {is}");
    };
    grew("chatchain_history_chats", &[], 1003.0);
    grew("chatchain_chats_received_total", &[], 1000.0);
    grew("chatchain_validation_batches_total", &[], 1.0);
    assert!(sample(&after, "chatchain_validation_seconds_total", &[]) > 0.0);
    grew("chatchain_chats_mined_total", &[], 3.0);
    grew("chatchain_mining_jobs_total", &[], 1.0);
    grew("chatchain_archives_sent_total", &[("reason", "mined")], 1.0);
    grew(
        "chatchain_archive_sent_bytes_total",
        &[("reason", "mined")],
        100.0,
    );
    grew("chatchain_store_commits_total", &[], 3.0);
    assert_eq!(sample(&after, "chatchain_peers", &[]), 1.0);
    assert!(sample(&after, "chatchain_mining_hash_rate", &[]) > 0.0);
    assert!(
        sample(
            &after,
            "chatchain_connections_opened_total",
            &[("direction", "inbound")]
        ) >= 1.0
    );
    // B took them from A: received, and validated.
    let at_b = parse_metrics(&scrape(&b)).expect("parsed");
    assert!(sample(&at_b, "chatchain_chats_received_total", &[]) >= 3.0);
    assert!(
        sample(
            &at_b,
            "chatchain_received_bytes_total",
            &[("type", "archive_response")]
        ) > 0.0
    );
    assert!(sample(&at_b, "chatchain_validation_batches_total", &[]) >= 1.0);
    // The client subcommand prints the same text.
    let (code, out, _) = client(&a, &["metrics"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("chatchain_chats_mined_total 3"), "{out}");
    // B goes: the ending is counted by direction and kind.
    b.sigterm();
    let ended = poll(WAIT, || {
        let now = parse_metrics(&scrape(&a)).expect("parsed");
        now.iter()
            .any(|(n, l, v)| {
                n == "chatchain_connections_ended_total" && l["direction"] == "inbound" && *v >= 1.0
            })
            .then_some(())
    });
    assert!(ended.is_some(), "{}", scrape(&a));
}
