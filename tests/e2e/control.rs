//! The control interface (docs/CONTROL.md): the client subcommands against
//! a running node, a stopped one (SIGSTOP), a killed one, and none; the
//! socket's mode and its bounds; a node run as a service (no stdin, a log
//! file); chats that are not UTF-8; and bad clients of the socket.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::process::{Child, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;
use wire::Message;

use crate::support::observe::MemWatch;
use crate::support::pty::PtyNode;
use crate::support::{
    Net, Node, WAIT, mined, node_command, poll, run_client, run_to_exit, shared_cpu,
};

const FILE: u8 = 7;

/// `node ARGS --data-dir DIR` to its end: exit code, stdout, stderr.
pub fn client(node: &Node, args: &[&str]) -> (Option<i32>, String, String) {
    client_within(node, args, WAIT)
}

/// [`client`], waiting at most `timeout` for the end.
fn client_within(node: &Node, args: &[&str], timeout: Duration) -> (Option<i32>, String, String) {
    run_client(&node.data_dir(), args, timeout)
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A `node hist ... --follow` process, its stdout read line by line on a
/// thread; killed on drop.
struct Following {
    child: Child,
    lines: Receiver<String>,
}

impl Following {
    /// `node hist ARGS --follow --data-dir DIR`, stderr piped.
    fn start(node: &Node, args: &[&str]) -> Following {
        let mut child = node_command()
            .arg("hist")
            .args(args)
            .args(["--follow", "--data-dir"])
            .arg(node.data_dir())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting the client");
        let stdout = child.stdout.take().expect("piped");
        let (tx, lines) = mpsc::channel();
        thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = Vec::new();
            while stdout.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
                let text = String::from_utf8_lossy(&line).trim_end().to_string();
                if tx.send(text).is_err() {
                    return;
                }
                line.clear();
            }
        });
        Following { child, lines }
    }

    /// The next line of its stdout (panics after [`WAIT`]).
    fn line(&self) -> String {
        self.lines
            .recv_timeout(WAIT)
            .expect("a line from hist --follow")
    }

    /// Its exit code and stderr, once it has exited by itself (panics
    /// after [`WAIT`]); every line it printed is then in [`Following::line`].
    fn exit(mut self) -> (Option<i32>, String) {
        let status = poll(WAIT, || self.child.try_wait().expect("waiting"))
            .expect("hist --follow did not exit");
        let mut err = String::new();
        let _ = self
            .child
            .stderr
            .take()
            .expect("piped")
            .read_to_string(&mut err);
        (status.code(), err)
    }
}

impl Drop for Following {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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
    let (code, out, _) = client(&node, &["hist", "0"]);
    assert_eq!(
        (code, out.trim()),
        (Some(0), "0 chats asked (the history holds 2)")
    );

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

    // A chat that cannot be sent: refused before the node is asked, as a
    // usage error (exit 2); the node refuses it in the same words.
    let (code, _, err) = client(&node, &["chat", "caf\u{e9}"]);
    assert_eq!(code, Some(2));
    let words = "chat refused: character 4, '\u{e9}' (U+00E9), is not ASCII; the network's chats are printable ASCII only";
    assert_eq!(err.trim(), format!("node: {words}"));
    let refused = node.ask(&serde_json::json!({"command": "chat", "text": "caf\u{e9}"}));
    assert_eq!(refused["error"], words);

    // The node stops: status and hist read the data directory, chat and
    // peers fail.
    node.sigterm();
    assert!(
        !node.data_dir().join("control.sock").exists(),
        "the socket is removed"
    );
    // Exit status 3: not running (what the data directory holds is said).
    let (code, out, err) = client(&node, &["status"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(out.starts_with("the node is not running"), "{out}");
    let (code, out, _) = client(&node, &["status", "--json"]);
    assert_eq!(code, Some(3));
    assert_eq!(json(&out)["reply"], "offline");
    assert_eq!(json(&out)["history"], 2);
    let (code, out, err) = client(&node, &["hist", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(json(&out)["running"], false);
    assert!(err.contains("not running"), "{err}");
    let (_, out, _) = client(&node, &["hist", "0"]);
    assert_eq!(out.trim(), "0 chats asked (the history holds 2)");
    // At most 100,000 chats, as the running node answers.
    let (code, out, _) = client(&node, &["hist", "100001"]);
    assert_eq!(
        (code, out.trim()),
        (
            Some(1),
            "hist refused: 100001 chats asked, at most 100000 are sent in one answer; \
             'chatchain export' writes the whole history"
        )
    );
    for args in [&["chat", "x"][..], &["peers"]] {
        let (code, out, err) = client(&node, args);
        assert_eq!(code, Some(3), "{args:?}");
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
    let follow = Following::start(&node, &["1", "--json"]);
    let first = json(&follow.line());
    assert_eq!(first["chats"][0]["text"], "before");
    node.chat("one");
    node.chat("two");
    let mut texts = Vec::new();
    while texts.len() < 2 {
        let event = json(&follow.line());
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
    // The client follows until the node stops, and so does the raw one:
    // the node's last event says it stopped.
    node.sigterm();
    line.clear();
    raw.read_line(&mut line).expect("the last event");
    assert_eq!(json(&line), serde_json::json!({"event": "stopped"}));
    line.clear();
    assert_eq!(raw.read_line(&mut line).expect("the end"), 0, "{line}");
    assert_eq!(json(&follow.line())["text"], "three");
    assert_eq!(
        json(&follow.line()),
        serde_json::json!({"event": "stopped"})
    );
    let (code, err) = follow.exit();
    assert_eq!(code, Some(0), "{err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn hist_follow_fails_when_the_node_goes_away_without_its_last_event() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 4);
    let mut node = net.node(1, &[]);
    node.chat("before");
    let follow = Following::start(&node, &["1"]);
    assert_eq!(follow.line(), "#0 before");
    let follow_json = Following::start(&node, &["1", "--json"]);
    assert_eq!(json(&follow_json.line())["reply"], "hist");
    node.sigkill();
    let (code, err) = follow.exit();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("the node went away"), "{err}");
    // With --json, the failure is the last JSON document on stdout.
    let last = json(&follow_json.line());
    let (code, err) = follow_json.exit();
    assert_eq!((code, err.as_str()), (Some(1), ""));
    assert_eq!(last["reply"], "error", "{last}");
    let error = last["error"].as_str().expect("words");
    assert!(error.starts_with("the node went away"), "{error}");
}

#[test]
fn a_chat_that_is_not_utf8_is_shown_with_its_exact_bytes() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 5);
    let mut node = net.node(1, &[]);
    let follow = Following::start(&node, &["0"]);
    assert_eq!(follow.line(), "the history is empty");
    let history = mined(&[b"plain", b"raw \xff\xfe bytes", b"caf\xc3\xa9"]);
    net.peer(100, 1)
        .send(&Message::ArchiveResponse(history.clone()));
    assert!(node.wait_history_len(3));
    // As the prompt shows them: UTF-8 as such, other bytes escaped.
    let shown = [r"#0 plain", r"#1 raw \xff\xfe bytes", "#2 caf\u{e9}"];
    for want in shown {
        assert_eq!(follow.line(), want);
    }
    let (code, out, _) = client(&node, &["hist"]);
    assert_eq!(
        (code, out.lines().collect::<Vec<_>>()),
        (Some(0), shown.to_vec())
    );
    let (_, out, _) = client(&node, &["hist", "--json"]);
    let chats = &json(&out)["chats"];
    assert_eq!(chats[1]["text"], "raw \u{fffd}\u{fffd} bytes");
    assert_eq!(chats[1]["text_hex"], "72617720fffe206279746573");
    // UTF-8, even beyond ASCII: no hex.
    assert_eq!(chats[2]["text"], "caf\u{e9}");
    assert!(chats[0].get("text_hex").is_none() && chats[2].get("text_hex").is_none());

    net.peer(100, 1).send(&Message::ArchiveResponse({
        let mut longer = history;
        longer.push(&miner::Miner::new(1).mine_next(&longer, b"\x80 last"));
        longer
    }));
    assert_eq!(follow.line(), r"#3 \x80 last");
    let (_, out, _) = client(&node, &["status"]);
    assert!(out.contains(r#"last "\x80 last""#), "{out}");
    let (_, out, _) = client(&node, &["status", "--json"]);
    assert_eq!(json(&out)["last_hex"], "80206c617374");
    // The same from the data directory of the stopped node.
    node.sigterm();
    assert_eq!(follow.line(), "the node stopped");
    let (code, err) = follow.exit();
    assert_eq!(code, Some(0), "{err}");
    let (_, out, _) = client(&node, &["hist", "2"]);
    assert_eq!(out, "#2 caf\u{e9}\n#3 \\x80 last\n");
    let (_, out, _) = client(&node, &["status", "--json"]);
    assert_eq!(json(&out)["last_hex"], "80206c617374");
}

#[test]
fn clients_of_a_node_that_does_not_answer_give_up_in_bounded_time() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 6);
    let mut node = net.node(1, &[]);
    node.chat("hello");
    /// Resumes the node, whatever happens to the test.
    struct Resume<'a>(&'a Node);
    impl Drop for Resume<'_> {
        fn drop(&mut self) {
            self.0.signal(libc::SIGCONT);
        }
    }
    node.signal(libc::SIGSTOP);
    let resume = Resume(&node);
    // All at once, each waiting its own 10 s (a chat 60 s).
    let late = format!(
        "the node at {} did not answer within",
        node.data_dir().display()
    );
    let in_10_s = format!("{late} 10 s");
    let chat_late = format!(
        "{late} 60 s; the chat may still be saved and sent once the node goes on: \
         check 'chatchain hist' before sending it again"
    );
    let asked: Vec<_> = [
        (&["status"][..], &in_10_s, 10),
        (&["peers", "--json"], &in_10_s, 10),
        (&["hist", "1", "--follow"], &in_10_s, 10),
        (&["chat", "sent", "late"], &chat_late, 60),
    ]
    .into_iter()
    .map(|(args, want, secs)| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend(["--data-dir".into(), node.data_dir().display().to_string()]);
        let want = want.clone();
        thread::spawn(move || {
            let started = Instant::now();
            let out = run_to_exit(&all, Duration::from_secs(secs + 30));
            let waited = started.elapsed();
            // Exit status 5: not answering in time.
            assert_eq!(out.status.code(), Some(5), "{all:?}");
            // With --json, the failure is a JSON document on stdout.
            let (told, quiet) = if all.iter().any(|a| a == "--json") {
                let told = json(&String::from_utf8_lossy(&out.stdout));
                assert_eq!(told["reply"], "error", "{all:?}: {told}");
                assert_eq!(told["kind"], "no_answer", "{all:?}: {told}");
                (
                    told["error"].as_str().unwrap_or("").to_string(),
                    &out.stderr,
                )
            } else {
                let told = String::from_utf8_lossy(&out.stderr);
                let told = told.trim().strip_prefix("node: ").unwrap_or(told.trim());
                (told.to_string(), &out.stdout)
            };
            assert_eq!(told, want, "{all:?}");
            assert!(quiet.is_empty(), "{all:?}");
            let secs = Duration::from_secs(secs);
            assert!(
                waited >= secs && waited < secs + Duration::from_secs(20),
                "{all:?}: {waited:?}"
            );
        })
    })
    .collect();
    for asked in asked {
        asked.join().expect("a client that gave up in time");
    }
    drop(resume);
    // Resumed, the node answers again, and the chat is sent after all.
    let (code, out, _) = client(&node, &["hist", "1"]);
    assert_eq!(code, Some(0));
    assert!(["#0 hello", "#1 sent late"].contains(&out.trim()), "{out}");
    assert!(node.wait_history_len(2), "the late chat is mined");
    let (_, out, _) = client(&node, &["hist", "1"]);
    assert_eq!(out.trim(), "#1 sent late");
    node.sigkill();
}

#[test]
fn the_socket_serves_a_bounded_number_of_clients_and_chats() {
    const MAX_CLIENTS: usize = 32;
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 7);
    let mut node = net.node(1, &[]);
    node.chat("hello");
    let socket = node.data_dir().join("control.sock");
    let status = br#"{"command":"status"}"#.to_vec();
    let answer = |stream: &UnixStream| {
        let mut line = String::new();
        BufReader::new(stream)
            .read_line(&mut line)
            .expect("an answer");
        json(&line)
    };
    let open = || {
        let mut stream = UnixStream::connect(&socket).expect("connecting");
        stream.set_read_timeout(Some(WAIT)).expect("timeout");
        // A client past the limit may be refused and closed before its
        // request goes (a broken pipe): the refusal is read all the same,
        // as `node status` does.
        let _ = stream.write_all(&[&status[..], b"\n"].concat());
        stream
    };
    let mut held: Vec<UnixStream> = (0..MAX_CLIENTS)
        .map(|_| {
            let stream = open();
            assert_eq!(answer(&stream)["reply"], "status");
            stream
        })
        .collect();
    let refused = answer(&open());
    assert_eq!(refused["reply"], "error", "{refused}");
    let error = refused["error"].as_str().unwrap();
    assert!(error.contains("too many control clients: 32"), "{error}");
    let (code, out, _) = client(&node, &["status"]);
    assert_eq!(code, Some(1));
    assert!(out.contains("too many control clients"), "{out}");
    // One leaves: a newcomer is served.
    drop(held.pop());
    let served = poll(WAIT, || {
        let reply = answer(&open());
        (reply["reply"] == "status").then_some(())
    });
    assert!(served.is_some(), "no client served after one left");
    drop(held);

    // At most 100,000 chats in one answer.
    let (code, out, _) = client(&node, &["hist", "100001", "--follow"]);
    assert_eq!(code, Some(1));
    assert!(
        out.contains("100001 chats asked, at most 100000") && out.contains("chatchain export"),
        "{out}"
    );
    let refused = node.ask(&serde_json::json!({"command": "hist", "n": 100_001}));
    assert_eq!(refused["reply"], "error", "{refused}");
    let (code, out, _) = client(&node, &["hist", "100000"]);
    assert_eq!((code, out.trim()), (Some(0), "#0 hello"));
}

#[test]
fn export_to_a_terminal_is_a_usage_error() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 8);
    let dir = tempfile::tempdir().expect("a temporary directory");
    let mut export = PtyNode::spawn(net.addr(1), net.port(), dir.path(), &["export"]);
    let status = export.expect_exit("export to a terminal");
    assert!(
        matches!(status, rexpect::process::WaitStatus::Exited(_, 2)),
        "{status:?}"
    );
    let screen = export.screen();
    assert!(
        screen
            .lines
            .iter()
            .any(|l| l == "node export: stdout is a terminal: give --output FILE, or redirect it"),
        "{screen}"
    );
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
        worst < Duration::from_secs(5),
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

/// A raw connection to the node's control socket, reads bounded by
/// [`WAIT`].
fn raw_client(node: &Node) -> UnixStream {
    let stream = UnixStream::connect(node.data_dir().join("control.sock")).expect("connecting");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    stream.set_write_timeout(Some(WAIT)).expect("timeout");
    stream
}

/// The next line `reader` reads, as JSON.
fn next_json(reader: &mut impl BufRead) -> Value {
    let mut line = String::new();
    reader.read_line(&mut line).expect("a line");
    json(&line)
}

#[test]
fn idle_clients_are_closed_and_followers_leave_room_for_requests() {
    const MAX_CLIENTS: usize = 32;
    const MAX_FOLLOWERS: usize = 28;
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 9);
    let mut node = net.node(1, &["--read-timeout", "4"]);
    let follow = b"{\"command\":\"hist\",\"n\":0,\"follow\":true}\n";
    let mut followers: Vec<BufReader<UnixStream>> = (0..MAX_FOLLOWERS)
        .map(|_| {
            let mut stream = raw_client(&node);
            stream.write_all(follow).expect("writing");
            let mut reader = BufReader::new(stream);
            assert_eq!(next_json(&mut reader)["reply"], "hist");
            reader
        })
        .collect();
    // One follower more: refused, in words.
    let mut extra = raw_client(&node);
    extra.write_all(follow).expect("writing");
    let refused = next_json(&mut BufReader::new(&extra));
    assert_eq!(refused["reply"], "error", "{refused}");
    let error = refused["error"].as_str().expect("words");
    assert!(error.starts_with("too many followers: 28"), "{error}");
    drop(extra);
    // The places left taken by idle clients: one sends nothing, one part
    // of a line.
    let mut idle: Vec<UnixStream> = Vec::new();
    let full = poll(WAIT, || {
        while followers.len() + idle.len() < MAX_CLIENTS {
            let mut stream = raw_client(&node);
            if idle.is_empty() {
                stream
                    .write_all(b"{\"command\":\"sta")
                    .expect("writing part of a line");
            }
            idle.push(stream);
        }
        let (code, out, _) = client(&node, &["status"]);
        (code == Some(1) && out.contains("too many control clients")).then_some(())
    });
    assert!(full.is_some(), "32 clients did not fill the places");
    // They are closed after the read timeout: requests are served again.
    for stream in &mut idle {
        let mut rest = Vec::new();
        assert_eq!(stream.read_to_end(&mut rest).expect("the end"), 0);
    }
    let (code, out, err) = client(&node, &["status", "--json"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert_eq!(json(&out)["reply"], "status");
    // Followers are not idle: they follow on.
    node.chat("still followed");
    for follower in &mut followers {
        let event = next_json(follower);
        assert_eq!(event["text"], "still followed", "{event}");
    }
}

#[test]
fn an_oversized_request_is_drained_so_that_its_error_is_read() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 10);
    let node = net.node(1, &["--read-timeout", "2"]);
    let megabyte = vec![b'x'; 1 << 20];
    // The client ends its stream, or sends nothing more: either way it
    // reads the error and then a clean end of stream (no reset).
    for shut_down in [true, false] {
        let mut long = raw_client(&node);
        long.write_all(&megabyte)
            .expect("the node takes the whole line");
        if shut_down {
            long.shutdown(std::net::Shutdown::Write).expect("shutdown");
        }
        let mut answer = String::new();
        long.read_to_string(&mut answer)
            .expect("the error, then the end of the stream");
        assert_eq!(
            json(&answer)["error"],
            "request longer than 65536 bytes; closing"
        );
    }
}

#[test]
fn client_failures_are_told_before_any_node_is_asked_and_in_json_with_json() {
    let _cpu = shared_cpu();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let dir = dir.path().join("none");
    let dir = dir.display().to_string();
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--data-dir", &dir]);
        let out = run_to_exit(&all, WAIT);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // A text that cannot be sent: a usage error in the node's words, even
    // with no node running.
    let refused = [
        (
            &["chat", "caf\u{e9}"][..],
            "chat refused: character 4, '\u{e9}' (U+00E9), is not ASCII; the network's chats are printable ASCII only",
        ),
        (
            &["chat", "a\u{7}b"],
            "chat refused: character 2 is a control character (0x07); the network's chats are printable ASCII only",
        ),
        (
            &["chat", "  "],
            "chat refused: the text is empty (usage: chat TEXT)",
        ),
        (
            &["chat", &"a".repeat(256)],
            "chat refused: the text is 256 bytes, the most is 255",
        ),
    ];
    for (args, words) in refused {
        let (code, out, err) = run(args);
        assert_eq!((code, out.as_str()), (Some(2), ""), "{args:?}: {err}");
        assert_eq!(err, format!("node: {words}\n"), "{args:?}");
        let (code, out, err) = run(&[args, &["--json"]].concat());
        assert_eq!((code, err.as_str()), (Some(2), ""), "{args:?}: {out}");
        assert_eq!(
            json(&out),
            serde_json::json!({"reply": "error", "error": words, "kind": "usage"})
        );
    }
    // No node, no data directory: each fails with exit status 3 (not
    // running); with --json, as one JSON document on stdout.
    for args in [
        &["status"][..],
        &["hist"],
        &["hist", "3", "--follow"],
        &["peers"],
        &["chat", "hello"],
    ] {
        let (code, out, err) = run(args);
        assert_eq!((code, out.as_str()), (Some(3), ""), "{args:?}: {err}");
        assert!(
            err.starts_with("node: no node is running"),
            "{args:?}: {err}"
        );
        let (code, out, err) = run(&[args, &["--json"]].concat());
        assert_eq!((code, err.as_str()), (Some(3), ""), "{args:?}: {out}");
        let answer = json(&out);
        assert_eq!(answer["reply"], "error", "{args:?}: {out}");
        assert_eq!(answer["kind"], "not_running", "{args:?}: {out}");
        let error = answer["error"].as_str().expect("words");
        assert!(error.starts_with("no node is running"), "{args:?}: {error}");
    }
}

#[test]
fn hist_answers_of_all_clients_share_a_memory_budget() {
    const CLIENTS: usize = 16;
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 11);
    let mut node = net.node(1, &[]);
    net.peer(100, 1)
        .send_raw(&crate::support::fixture_bytes("history-100k.bin"));
    assert!(node.wait_history_len(100_000));
    let socket = socket2::SockAddr::unix(node.data_dir().join("control.sock")).expect("an address");
    let watch = MemWatch::start(&node);
    // Clients that ask for the whole history (about 8.7 MB as JSON) and
    // read nothing for now.
    let hogs: Vec<UnixStream> = (0..CLIENTS)
        .map(|_| {
            let hog = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
                .expect("a socket");
            hog.set_recv_buffer_size(4096).expect("a small buffer");
            hog.connect(&socket).expect("connecting");
            let mut hog = UnixStream::from(hog);
            hog.set_read_timeout(Some(WAIT)).expect("timeout");
            hog.write_all(b"{\"command\":\"hist\",\"n\":100000}\n")
                .expect("writing");
            hog.shutdown(std::net::Shutdown::Write).expect("shutdown");
            hog
        })
        .collect();
    thread::sleep(Duration::from_secs(3));
    let mem = watch.finish();
    // 16 answers would take 140 MB; at most 32 MiB wait, and one more
    // answer beyond them.
    assert!(
        mem.growth_kb() < 100 << 10,
        "the node grew by {} kB",
        mem.growth_kb()
    );
    // Read now, every answer comes, the ones that waited too.
    for mut hog in hogs {
        let mut answer = String::new();
        hog.read_to_string(&mut answer).expect("the whole answer");
        let answer = json(&answer);
        assert_eq!(answer["chats"].as_array().map(Vec::len), Some(100_000));
    }
}
