//! The control interface (docs/CONTROL.md): the client subcommands against
//! a running node and a stopped one, the socket's mode, a node run as a
//! service (no stdin, a log file), and bad clients of the socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::{Net, Node, WAIT, poll, run_to_exit, shared_cpu};

const FILE: u8 = 7;

/// `node ARGS --data-dir DIR` to its end: exit code, stdout, stderr.
fn client(node: &Node, args: &[&str]) -> (Option<i32>, String, String) {
    let dir = node.data_dir();
    let mut all: Vec<&str> = args.to_vec();
    let dir = dir.display().to_string();
    all.extend(["--data-dir", &dir]);
    let out = run_to_exit(&all, WAIT);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[test]
fn the_client_subcommands_talk_to_the_running_node_and_read_a_stopped_one() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 0);
    let mut node = net.node(1, &[]);
    let mode = std::fs::metadata(node.data_dir().join("control.sock"))
        .expect("the control socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "only its owner may use it");

    let (code, out, err) = client(&node, &["chat", "hello", "from", "a", "script"]);
    assert_eq!(code, Some(0), "{err}");
    // Mined already, or not yet: the chat is on disk either way.
    assert!(
        ["saved (0 pending)", "saved (1 pending)"].contains(&out.trim()),
        "{out}"
    );
    let (code, out, _) = client(&node, &["chat", "--json", "second"]);
    assert_eq!(code, Some(0));
    assert_eq!(json(&out)["reply"], "saved");
    assert!(poll(WAIT, || (node.status()["history"] == 2).then_some(())).is_some());

    let (code, out, _) = client(&node, &["hist", "--json"]);
    assert_eq!(code, Some(0));
    let hist = json(&out);
    assert_eq!(hist["running"], true);
    assert_eq!(hist["chats"][0]["text"], "hello from a script");
    assert_eq!(hist["chats"][1]["index"], 1);
    let (_, out, _) = client(&node, &["hist", "1"]);
    assert_eq!(out.trim(), "#1 second");

    let (code, out, _) = client(&node, &["status", "--json"]);
    assert_eq!(code, Some(0));
    let status = json(&out);
    assert_eq!(
        (&status["reply"], &status["history"], &status["bind"]),
        (&"status".into(), &2.into(), &net.addr(1).to_string().into())
    );
    let (_, out, _) = client(&node, &["status"]);
    assert!(out.contains("history:   2 chats, last \"second\""), "{out}");
    let (code, out, _) = client(&node, &["peers", "--json"]);
    assert_eq!(
        (code, &json(&out)["peers"]),
        (Some(0), &Value::Array(vec![]))
    );

    // A chat that cannot be sent: refused, exit 1.
    let (code, out, _) = client(&node, &["chat", "caf\u{e9}"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("non-ASCII byte (0xc3)"), "{out}");

    // The node stops: status and hist read the data directory, chat and
    // peers fail.
    node.sigterm();
    assert!(
        !node.data_dir().join("control.sock").exists(),
        "the socket is removed"
    );
    let (code, out, err) = client(&node, &["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.starts_with("the node is not running"), "{out}");
    let (_, out, _) = client(&node, &["status", "--json"]);
    assert_eq!(json(&out)["reply"], "offline");
    assert_eq!(json(&out)["history"], 2);
    let (code, out, err) = client(&node, &["hist", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(json(&out)["running"], false);
    assert!(err.contains("not running"), "{err}");
    for args in [&["chat", "x"][..], &["peers"]] {
        let (code, out, err) = client(&node, args);
        assert_eq!(code, Some(1), "{args:?}");
        assert!(out.is_empty(), "{args:?}: {out}");
        assert!(
            err.contains("no node is running with data directory"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn hist_follow_prints_every_chat_as_it_enters_the_history() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 1);
    let mut node = net.node(1, &[]);
    node.chat("before");
    assert!(poll(WAIT, || (node.status()["history"] == 1).then_some(())).is_some());
    let mut follow = Command::new(env!("CARGO_BIN_EXE_node"))
        .args(["hist", "1", "--follow", "--json", "--data-dir"])
        .arg(node.data_dir())
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the client");
    let stdout = follow.stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let first = json(&rx.recv_timeout(WAIT).expect("the hist answer"));
    assert_eq!(first["chats"][0]["text"], "before");
    node.chat("one");
    node.chat("two");
    let mut texts = Vec::new();
    while texts.len() < 2 {
        let event = json(&rx.recv_timeout(WAIT).expect("an event"));
        assert_eq!(event["event"], "chat", "{event}");
        texts.push(event["text"].as_str().expect("a text").to_string());
    }
    assert_eq!(texts, ["one", "two"]);
    // A raw client that asks to follow and shuts down its side (as a pipe
    // into socat does) follows all the same.
    let mut raw = UnixStream::connect(node.data_dir().join("control.sock")).expect("connecting");
    raw.set_read_timeout(Some(WAIT)).expect("timeout");
    raw.write_all(b"{\"command\":\"hist\",\"n\":0,\"follow\":true}\n")
        .expect("writing");
    raw.shutdown(std::net::Shutdown::Write).expect("shutdown");
    let mut raw = BufReader::new(raw);
    let mut line = String::new();
    raw.read_line(&mut line).expect("the hist answer");
    assert_eq!(json(&line)["reply"], "hist");
    node.chat("three");
    line.clear();
    raw.read_line(&mut line).expect("an event");
    assert_eq!(json(&line)["text"], "three", "{line}");
    drop(raw);
    // The client follows until the node stops.
    node.sigterm();
    let ended = poll(WAIT, || {
        follow.try_wait().expect("waiting").map(|s| s.code())
    });
    assert_eq!(ended, Some(Some(0)));
    let _ = reader.join();
}

#[test]
fn a_node_without_stdin_runs_as_a_service_and_logs_to_a_file() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 2);
    let log = tempfile::NamedTempFile::new().expect("a temporary file");
    let log_path = log.path().display().to_string();
    let mut node = net.node(1, &["--log-file", &log_path, "--log", "info"]);
    node.close_stdin();
    thread::sleep(Duration::from_millis(500));
    let follower = node.follow();
    node.chat("still here");
    assert!(follower.chat_at("still here", WAIT).is_some(), "not mined");
    net.archive(100, 1);
    let logged = poll(WAIT, || {
        let text = std::fs::read_to_string(&log_path).unwrap_or_default();
        text.contains(&format!("connected to {} (Inbound)", net.addr(100)))
            .then_some(text)
    });
    let text = logged.expect("the connection logged in the file");
    assert!(text.contains(" INFO "), "{text}");
    assert!(
        !node.stderr().contains("connected to"),
        "logs go to the file, not stderr"
    );
}

/// Answers one request on a fresh connection, timed.
fn timed_status(node: &Node) -> Duration {
    let asked = Instant::now();
    let status = node.ask(&serde_json::json!({"command": "status"}));
    assert_eq!(status["reply"], "status");
    asked.elapsed()
}

#[test]
fn bad_clients_of_the_socket_get_an_error_and_stall_nothing() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 3);
    let mut node = net.node(1, &["--read-timeout", "2"]);
    // A history, so that answers to `hist` are large.
    net.peer(100, 1)
        .send_raw(&crate::support::fixture_bytes("history-1k.bin"));
    assert!(node.wait_history_len(1000));
    let socket = node.data_dir().join("control.sock");

    // Garbage, then a request: an error, then the answer.
    let mut stream = UnixStream::connect(&socket).expect("connecting");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream
        .write_all(b"\x00\xffnot json at all\n{\"command\":\"status\"}\n")
        .expect("writing");
    let mut lines = BufReader::new(stream.try_clone().expect("clone")).lines();
    let error = json(&lines.next().expect("a line").expect("read"));
    assert_eq!(error["reply"], "error");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .starts_with("not a request"),
        "{error}"
    );
    assert_eq!(
        json(&lines.next().expect("a line").expect("read"))["reply"],
        "status"
    );
    let unknown = UnixStream::connect(&socket).expect("connecting");
    (&unknown)
        .write_all(b"{\"command\":\"rm -rf\"}\n")
        .expect("writing");
    let mut line = String::new();
    BufReader::new(&unknown).read_line(&mut line).expect("read");
    assert_eq!(json(&line)["reply"], "error");

    // A request longer than 64 KiB, with or without its newline: an error,
    // then the close, without a reset that would lose the error.
    for long_line in [vec![b'a'; 200 << 10], {
        let mut line = vec![b' '; (64 << 10) + 1];
        line.extend_from_slice(b"{\"command\":\"status\"}\n");
        line
    }] {
        let mut long = UnixStream::connect(&socket).expect("connecting");
        long.set_read_timeout(Some(WAIT)).expect("timeout");
        long.write_all(&long_line).expect("writing");
        let mut answer = String::new();
        long.read_to_string(&mut answer)
            .expect("the error, then the end of the stream");
        assert!(
            answer.contains("request longer than 65536 bytes"),
            "{answer}"
        );
    }

    // Many requests in one write, then the end of the stream: every one
    // answered, in order, then the close (more than the node reads at
    // once: reading resumes as requests are answered).
    const PIPELINED: usize = 3000;
    let mut many = UnixStream::connect(&socket).expect("connecting");
    many.set_read_timeout(Some(WAIT)).expect("timeout");
    let requests = b"{\"command\":\"hist\",\"n\":0}\n".repeat(PIPELINED);
    let writer = {
        let mut many = many.try_clone().expect("clone");
        thread::spawn(move || {
            many.write_all(&requests).expect("writing");
            many.shutdown(std::net::Shutdown::Write).expect("shutdown");
        })
    };
    let mut answers = String::new();
    many.read_to_string(&mut answers)
        .expect("every answer, then the end of the stream");
    writer.join().expect("the writer");
    assert_eq!(answers.lines().count(), PIPELINED);
    assert!(answers.lines().all(|l| json(l)["reply"] == "hist"));

    // Clients that ask and never read: dropped once their answers stall
    // for the read timeout; meanwhile an honest client is answered at once.
    let hogs: Vec<UnixStream> = (0..4)
        .map(|_| {
            let mut hog = UnixStream::connect(&socket).expect("connecting");
            hog.set_nonblocking(true).expect("non-blocking");
            let request = b"{\"command\":\"hist\",\"n\":100}\n".repeat(2000);
            let mut sent = 0;
            while sent < request.len() {
                match hog.write(&request[sent..]) {
                    Ok(n) => sent += n,
                    Err(_) => break,
                }
            }
            hog
        })
        .collect();
    let mut worst = Duration::ZERO;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(4) {
        worst = worst.max(timed_status(&node));
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        worst < Duration::from_secs(1),
        "an honest client waited {worst:?}"
    );
    for mut hog in hogs {
        hog.set_nonblocking(false).expect("blocking");
        hog.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut sink = Vec::new();
        // Dropped by the node: reading ends (what was queued, then EOF or
        // a reset), it does not block.
        let _ = hog.read_to_end(&mut sink);
    }
}
