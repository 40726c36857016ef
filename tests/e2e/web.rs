//! The page (docs/HTTP.md) in a real browser: headless Chromium driven
//! over WebDriver (`support/browser.rs`). Chats typed in one page reach
//! the others and a prompt, and back, once each and in order; a reload
//! and a node restart leave a page whole; hostile texts stay text; the
//! token, Host and origin checks; a 100,000-chat history; screenshots.
//! Without chromium and chromedriver (Debian's `chromium` and
//! `chromium-driver`, which `.ci/run` installs as root) the browser tests
//! say so and skip; the checks that need no browser always run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::time::Instant;

use wire::Message;

use crate::support::browser::{Browser, Driver};
use crate::support::{Net, Node, WAIT, fixture_bytes, mined, poll, run_to_exit, shared_cpu};

const FILE: u8 = 12;
/// The page's port in these tests: each node has its own address.
const PAGE_PORT: u16 = 51580;
/// chromedriver's port for test `test`: the test's own port plus 25 (no
/// test of this module's has a network port that high).
fn driver_port(net: &Net) -> u16 {
    net.port() + 25
}

/// `--http IP:51580` for node `host` of `net`.
fn page_args(net: &Net, host: u8) -> Vec<String> {
    vec!["--http".into(), format!("{}:{PAGE_PORT}", net.addr(host))]
}

fn start(net: &Net, host: u8, extra: &[&str]) -> Node {
    let mut args = page_args(net, host);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let node = net.node(host, &args);
    // Printed once the page's port listens, after `listening on`.
    node.page_url();
    node
}

/// The driver, or `None` after saying why the test skips.
fn driver(net: &Net) -> Option<Driver> {
    match Driver::start(driver_port(net)) {
        Ok(driver) => Some(driver),
        Err(why) => {
            eprintln!("skipped: no browser to drive ({why})");
            None
        }
    }
}

/// A page of `node` open and live in a new browser of `width` x `height`.
fn open(driver: &Driver, node: &Node, width: u32, height: u32) -> Browser {
    driver.open(&node.page_url(), width, height)
}

/// The indexes are 0, 1, 2, ... with no gap and no repeat.
fn assert_whole(chats: &[(u64, String)]) {
    let first = chats.first().map_or(0, |c| c.0);
    for (at, (index, text)) in chats.iter().enumerate() {
        assert_eq!(
            *index,
            first + at as u64,
            "gap or repeat at {text:?}: {chats:?}"
        );
    }
}

/// One HTTP/1.1 request on a new connection: (status, head, body); status
/// 0 when the connection closed without an answer.
fn http(to: SocketAddrV4, request: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(to).expect("the page's port");
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_string(), body.to_string())
}

fn screenshot_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("web-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn a_chat_reaches_every_page_and_prompt_once_and_in_order() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 0);
    let Some(driver) = driver(&net) else { return };
    let mut a = start(&net, 1, &[]);
    let b = start(&net, 2, &["--peer", &net.addr(1).to_string()]);
    let mut c = start(&net, 3, &["--peer", &net.addr(1).to_string()]);
    assert!(poll(WAIT, || (a.peer_addrs().len() >= 2).then_some(())).is_some());
    let (page_a, page_b) = (open(&driver, &a, 1280, 900), open(&driver, &b, 1280, 900));

    page_a.type_chat("from page a");
    let sent = Instant::now();
    let at_b = page_b
        .wait_chat("from page a", WAIT)
        .expect("page b shows it");
    eprintln!("page a -> page b: {:?}", sent.elapsed());
    assert!(c.wait_line(|l| l == "#0 from page a", WAIT).is_some());
    // Typed at c's prompt (its stdin), which shows the chats as they come.
    c.send("chat from the prompt of c");
    assert!(page_a.wait_chat("from the prompt of c", WAIT).is_some());
    assert!(page_b.wait_chat("from the prompt of c", WAIT).is_some());
    // Page a says how its chat went.
    let state = page_a.wait_js(
        "return document.querySelector('#sent li').textContent;",
        WAIT,
        |v| v.as_str().is_some_and(|s| s.contains("mined as #")),
    );
    assert!(state.is_some(), "page a never said its chat was mined");
    for page in [&page_a, &page_b] {
        let chats = page.chats();
        assert_whole(&chats);
        let texts: Vec<&str> = chats.iter().map(|c| c.1.as_str()).collect();
        assert_eq!(texts, ["from page a", "from the prompt of c"]);
        assert_eq!(chats[0].0, at_b);
    }
    assert_eq!(c.hist(), ["from page a", "from the prompt of c"]);
}

#[test]
fn a_reload_and_a_node_restart_leave_the_page_whole() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 1);
    let Some(driver) = driver(&net) else { return };
    let mut node = start(&net, 1, &[]);
    let page = open(&driver, &node, 1280, 900);
    for i in 0..3 {
        node.chat(&format!("before {i}"));
    }
    assert!(page.wait_chat("before 2", WAIT).is_some());
    page.reload();
    assert!(page.wait_chat("before 2", WAIT).is_some());
    assert_eq!(page.chats().len(), 3);

    node.sigterm();
    node.restart();
    for i in 0..3 {
        node.chat(&format!("after {i}"));
    }
    // The stream comes back by itself and resumes after "before 2".
    assert!(
        page.wait_chat("after 2", WAIT * 2).is_some(),
        "{:?}",
        page.chats()
    );
    let chats = page.chats();
    assert_whole(&chats);
    let texts: Vec<&str> = chats.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(
        texts,
        [
            "before 0", "before 1", "before 2", "after 0", "after 1", "after 2"
        ]
    );
}

#[test]
fn hostile_texts_are_shown_as_text_and_run_nothing() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 2);
    let Some(driver) = driver(&net) else { return };
    let mut node = start(&net, 1, &[]);
    // Terminal escapes and bytes that are not UTF-8 come from a peer.
    let escapes: &[&[u8]] = &[b"\x1b[31mred\x1b[0m \x07", b"raw \xff bytes"];
    net.peer(100, 1)
        .send(&Message::ArchiveResponse(mined(escapes)));
    assert!(node.wait_history_len(2));
    let page = open(&driver, &node, 1280, 900);
    let typed = [
        "<script>window.__xss = 1</script>",
        "<img src=x onerror=\"window.__xss = 2\">",
        "</textarea><b>bold</b>",
        "javascript:window.__xss = 3",
    ];
    for text in typed {
        page.type_chat(text);
        assert!(page.wait_chat(text, WAIT).is_some(), "{text}");
    }
    let texts: Vec<String> = page.chats().into_iter().map(|c| c.1).collect();
    assert_eq!(
        texts[..2],
        ["\u{1b}[31mred\u{1b}[0m \u{7}", "raw \u{fffd} bytes"]
    );
    assert_eq!(texts[2..], typed.map(String::from));
    let marks = page.js("return [window.__xss === undefined, \
         document.querySelectorAll('#chats img, #chats script, #chats b').length];");
    assert_eq!(
        marks,
        serde_json::json!([true, 0]),
        "a payload ran or became markup"
    );
}

#[test]
fn without_the_token_or_from_elsewhere_nothing_is_done() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 3);
    let node = start(&net, 1, &[]);
    let other = start(&net, 2, &[]);
    let page = SocketAddrV4::new(net.addr(1), PAGE_PORT);
    let url = node.page_url();
    let token = url
        .split("token=")
        .nth(1)
        .expect("a token in the URL")
        .to_string();
    let host = format!("Host: {page}\r\n");
    let get = |path: &str, extra: &str| {
        http(
            page,
            &format!("GET {path} HTTP/1.1\r\n{host}{extra}Connection: close\r\n\r\n"),
        )
    };
    let post = |headers: &str, body: &str| {
        http(
            page,
            &format!(
                "POST /api/chat HTTP/1.1\r\n{host}{headers}Content-Length: {}\r\n\
                 Connection: close\r\n\r\n{body}",
                body.len()
            ),
        )
    };
    let json = "Content-Type: application/json\r\n";
    let cookie = format!("Cookie: chatchain-{PAGE_PORT}={token}\r\n");

    // `node url` prints the URL the node printed.
    let dir = node.data_dir().display().to_string();
    let out = run_to_exit(["url", "--data-dir", &dir], WAIT);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), url);
    // The page itself is open to all, with the headers that protect it.
    let (status, head, _) = get("/", "");
    assert_eq!(status, 200, "{head}");
    for header in [
        "content-security-policy: default-src 'none'; script-src 'self'",
        "x-frame-options: DENY",
        "x-content-type-options: nosniff",
        "referrer-policy: no-referrer",
    ] {
        assert!(
            head.to_lowercase().contains(&header.to_lowercase()),
            "{header}: {head}"
        );
    }
    // The URL with the token sets the cookie.
    let (status, head, _) = get(&format!("/?token={token}"), "");
    assert_eq!(status, 303);
    assert!(head.contains("HttpOnly; SameSite=Strict"), "{head}");
    assert_eq!(get(&format!("/?token={}", "0".repeat(32)), "").0, 401);
    // No token, a wrong one: refused.
    assert_eq!(get("/api/status", "").0, 401);
    assert_eq!(get("/api/status", "Authorization: Bearer nope\r\n").0, 401);
    assert_eq!(get("/api/status", &cookie).0, 200);
    assert_eq!(
        get("/api/status", &format!("Authorization: Bearer {token}\r\n")).0,
        200
    );
    // /metrics takes the bearer header only (see
    // metrics_are_served_with_the_bearer_token_and_move).
    assert_eq!(get("/metrics", &cookie).0, 401);
    // A foreign Host (DNS rebinding): refused, the page too.
    let rebound = http(
        page,
        &format!(
            "GET /api/status HTTP/1.1\r\nHost: evil.example:{PAGE_PORT}\r\n{cookie}Connection: close\r\n\r\n"
        ),
    );
    assert_eq!(rebound.0, 421, "{}", rebound.1);
    let rebound = http(
        page,
        "GET / HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(rebound.0, 421);
    // A chat with the cookie but from another origin, or none: refused;
    // a form's body: refused.
    let body = r#"{"text":"forged"}"#;
    let (status, _, why) = post(
        &format!("{cookie}{json}Origin: http://evil.example\r\n"),
        body,
    );
    assert_eq!(status, 403, "{why}");
    assert_eq!(post(&format!("{cookie}{json}"), body).0, 403);
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let own = format!("Origin: http://{page}\r\n");
    assert_eq!(post(&format!("{cookie}{form}{own}"), "text=forged").0, 415);
    // A body past the bound: refused.
    let (status, _, _) = post(
        &format!("{cookie}{json}{own}"),
        &format!(r#"{{"text":"{}"}}"#, "x".repeat(5000)),
    );
    assert_eq!(status, 413);
    // A text the prompt would refuse: refused in its words.
    let (status, _, why) = post(&format!("{cookie}{json}{own}"), r#"{"text":"caf\u00e9"}"#);
    assert_eq!(status, 400);
    assert!(why.contains("printable ASCII"), "{why}");
    assert_eq!(
        node.ask(&serde_json::json!({"command":"status"}))["history"],
        0
    );

    // In a browser: a page of another origin posts to this one, as any
    // web site could; nothing is sent. Then the owner's page works.
    let Some(driver) = driver(&net) else { return };
    let elsewhere = open(&driver, &other, 1280, 900);
    elsewhere.js(&format!(
        "fetch('http://{page}/api/chat', {{method: 'POST', mode: 'no-cors', credentials: 'include', \
         headers: {{'Content-Type': 'text/plain'}}, body: JSON.stringify({{text: 'forged'}})}}) \
         .then(() => window.__posted = 1, () => window.__posted = 2);"
    ));
    assert!(
        elsewhere
            .wait_js("return window.__posted;", WAIT, |v| !v.is_null())
            .is_some()
    );
    let mine = open(&driver, &node, 1280, 900);
    mine.type_chat("the owner's chat");
    assert!(mine.wait_chat("the owner's chat", WAIT).is_some());
    let texts: Vec<String> = mine.chats().into_iter().map(|c| c.1).collect();
    assert_eq!(texts, ["the owner's chat"]);
}

#[test]
fn a_100k_history_shows_the_latest_at_once_and_pages_back() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 4);
    let Some(driver) = driver(&net) else { return };
    let mut node = start(&net, 1, &[]);
    net.peer(100, 1)
        .send_raw(&fixture_bytes("history-100k.bin"));
    assert!(node.wait_history_len(100_000));
    let page = driver.browser(1280, 900);
    let opened = Instant::now();
    page.goto(&node.page_url());
    assert!(
        page.wait_last(99_999, WAIT),
        "the latest chat was not shown"
    );
    eprintln!(
        "100k history: latest chat shown {:?} after opening",
        opened.elapsed()
    );
    let shown = page.chats();
    assert!(
        shown.len() <= 200,
        "{} chats in the page at first",
        shown.len()
    );
    assert_whole(&shown);
    let first = shown[0].0;
    // Scrolling up brings the page before, joined without a gap.
    page.js("document.getElementById('log').scrollTop = 0;");
    let earlier = page.wait_js(
        "return Number(document.querySelector('#chats li').dataset.index);",
        WAIT,
        |v| v.as_u64().is_some_and(|i| i < first),
    );
    assert!(earlier.is_some(), "no earlier chats after scrolling up");
    assert_whole(&page.chats());

    page.js("document.getElementById('log').scrollTop = 1e9;");
    page.type_chat("a chat from the page");
    assert!(page.wait_chat("a chat from the page", WAIT).is_some());
    let desktop = page.screenshot(screenshot_path("desktop-1280x900.png"));
    page.resize(390, 844);
    page.js("document.getElementById('log').scrollTop = 1e9;");
    let phone = page.screenshot(screenshot_path("phone-390x844.png"));
    let overflow = page.js("return document.documentElement.scrollWidth <= window.innerWidth + 1;");
    assert_eq!(overflow, true, "the page is wider than a phone");
    eprintln!("screenshots: {} {}", desktop.display(), phone.display());
}

#[test]
fn a_port_in_use_is_said_once_and_the_node_goes_on_unless_asked_for_it() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 5);
    let addr = net.addr(1);
    let _taken = TcpListener::bind((addr, PAGE_PORT)).expect("taking the page's port");
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().display().to_string();
    let port = net.port().to_string();
    let common = [
        "--bind",
        &addr.to_string(),
        "--port",
        &port,
        "--data-dir",
        &data,
        "--threads",
        "1",
    ];
    // Asked for: the node does not start.
    let page = format!("{addr}:{PAGE_PORT}");
    let mut asked = common.to_vec();
    asked.extend(["--http", &page]);
    let out = run_to_exit(&asked, WAIT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("cannot serve the page on {page} (--http)")),
        "{err}"
    );
    // By default: said once, and the node runs (it answers `quit`).
    let out = crate::support::run_with_input(common, b"status\nquit\n", WAIT);
    let (stdout, err) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(
        err.matches("no page: cannot serve it on").count(),
        1,
        "{err}"
    );
    assert!(
        stdout.contains("listening on") && !stdout.contains("the page:"),
        "{stdout}"
    );
    // That node has stopped: `url` says none runs (exit status 3).
    let url = run_to_exit(["url", "--data-dir", &data], WAIT);
    assert_eq!(url.status.code(), Some(3));
}

#[test]
fn slow_clients_and_too_many_connections_are_closed() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 6);
    let node = start(&net, 1, &["--read-timeout", "1"]);
    let page = SocketAddrV4::new(net.addr(1), PAGE_PORT);
    // A client that sends half a request, or nothing, is closed at the
    // read timeout.
    for sent in [&b"GET / HTTP/1.1\r\n"[..], b""] {
        let mut slow = TcpStream::connect(page).unwrap();
        slow.write_all(sent).unwrap();
        slow.set_read_timeout(Some(WAIT)).unwrap();
        let began = Instant::now();
        let mut rest = Vec::new();
        let _ = slow.read_to_end(&mut rest);
        assert!(began.elapsed() < WAIT, "a slow client was kept");
    }
    // Past the connections served at once, one more is closed at once.
    let held: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(page).unwrap()).collect();
    let mut extra = TcpStream::connect(page).unwrap();
    extra.set_read_timeout(Some(WAIT)).unwrap();
    extra.write_all(b"GET / HTTP/1.1\r\n\r\n").ok();
    let mut answer = Vec::new();
    let _ = extra.read_to_end(&mut answer);
    assert!(answer.is_empty(), "{}", String::from_utf8_lossy(&answer));
    drop(held);
    let served = || {
        (http(
            page,
            &format!("GET / HTTP/1.1\r\nHost: {page}\r\nConnection: close\r\n\r\n"),
        )
        .0 == 200)
            .then_some(())
    };
    assert!(
        poll(WAIT, served).is_some(),
        "the places were not given back"
    );
    // A live stream that reads nothing is dropped, and said.
    let token = node.page_url().split("token=").nth(1).unwrap().to_string();
    // Its receive buffer small from the start (the window is set at
    // connect).
    let deaf = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    deaf.set_recv_buffer_size(4096).unwrap();
    deaf.connect(&std::net::SocketAddr::from(page).into())
        .unwrap();
    let mut deaf = TcpStream::from(deaf);
    write!(
        deaf,
        "GET /api/events?after=-1 HTTP/1.1\r\nHost: {page}\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
    .unwrap();
    // 1,000 chats of 250 bytes: far more than the socket buffers and the
    // stream's queue hold.
    let texts: Vec<Vec<u8>> = (0..1000)
        .map(|i| format!("{i:0>250}").into_bytes())
        .collect();
    let texts: Vec<&[u8]> = texts.iter().map(Vec::as_slice).collect();
    // Mined before connecting: with --read-timeout 1, a peer that says
    // nothing for a second (mining 1,000 chats on a loaded machine) is
    // closed as silent before it sends them.
    let archive = Message::ArchiveResponse(mined(&texts));
    net.peer(100, 1).send(&archive);
    let said = poll(WAIT, || {
        node.stderr()
            .contains("page: a live stream dropped")
            .then_some(())
    });
    assert!(said.is_some(), "{}", node.stderr());
    assert!(node.stderr().contains("closed: 64 are open"));
    let mut reader = BufReader::new(&deaf);
    let mut line = String::new();
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        line.clear();
    }
}

#[test]
fn a_switch_to_a_longer_history_is_shown_once_and_the_page_follows_it() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 7);
    let Some(driver) = driver(&net) else { return };
    let mut node = start(&net, 1, &[]);
    node.chat("mine alone");
    let page = open(&driver, &node, 1280, 900);
    assert_eq!(page.wait_chat("mine alone", WAIT), Some(0));
    net.peer(100, 1)
        .send(&Message::ArchiveResponse(mined(&[b"p0", b"p1", b"p2"])));
    // Ours is mined again on top of the longer history.
    let remined = poll(WAIT * 2, || {
        page.chats()
            .contains(&(3, "mine alone".to_string()))
            .then_some(())
    });
    assert!(remined.is_some(), "{:?}", page.chats());
    let chats = page.chats();
    assert_whole(&chats);
    let texts: Vec<&str> = chats.iter().map(|c| c.1.as_str()).collect();
    assert_eq!(texts, ["p0", "p1", "p2", "mine alone"]);
    let said = page.js("return document.getElementById('switches').textContent;");
    let said = said.as_str().expect("text");
    assert_eq!(
        said.matches("replaced by a longer history").count(),
        1,
        "{said}"
    );
    assert!(
        said.contains("1 chats from #0 on") && said.contains("1 of yours will be mined again"),
        "{said}"
    );
}

/// `/metrics` with the token as a bearer header: the node's figures as
/// OpenMetrics text (issue 21, served by the page's server), which move
/// as chats come.
#[test]
fn metrics_are_served_with_the_bearer_token_and_move() {
    let _cpu = shared_cpu();
    let net = Net::new(FILE, 9);
    let mut node = start(&net, 1, &[]);
    let page = SocketAddrV4::new(net.addr(1), PAGE_PORT);
    let url = node.page_url();
    let token = url.split("token=").nth(1).expect("a token in the URL");
    let scrape = || {
        http(
            page,
            &format!(
                "GET /metrics HTTP/1.1\r\nHost: {page}\r\nAuthorization: Bearer {token}\r\n\
                 Connection: close\r\n\r\n"
            ),
        )
    };
    let history = |body: &str| {
        body.lines()
            .find_map(|l| l.strip_prefix("chatchain_history_chats "))
            .map(str::to_string)
    };
    let (status, head, body) = scrape();
    assert_eq!(status, 200, "{head}");
    assert!(
        head.to_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    assert_eq!(history(&body).as_deref(), Some("0"), "{body}");
    net.peer(100, 1)
        .send(&Message::ArchiveResponse(mined(&[b"scraped"])));
    assert!(node.wait_history_len(1));
    let (_, _, body) = scrape();
    assert_eq!(history(&body).as_deref(), Some("1"), "{body}");
}
