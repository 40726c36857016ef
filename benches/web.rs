//! Figures of the page (docs/HTTP.md) in a real headless Chromium over
//! WebDriver (printed, not criterion: these time a browser and real node
//! processes on loopback):
//! - first paint: from opening the page of a node holding the
//!   100,000-chat fixture to its latest chat shown (median of 5 loads),
//!   and the browser's own first-contentful-paint;
//! - a chat typed in page A until it shows in page B (median of 20);
//! - the node's resident memory with 20 pages following: 20 live streams
//!   read as a page reads them (a browser opens at most 6 connections to
//!   one address, so they are plain clients), and one browser page.
//!
//! `cargo bench -p node --bench web` (skips without chromium and
//! chromedriver, as the tests do)

// The end-to-end tests' support module, of which this bench uses a part
// (see benches/network.rs).
#[path = "../tests/e2e/support/mod.rs"]
pub mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use support::browser::Driver;
use support::observe::proc_kb;
use support::{Net, Node, WAIT, fixture_bytes};

fn main() {
    let net = Net::new(17, 40);
    let driver = match Driver::start(net.port() + 5) {
        Ok(driver) => driver,
        Err(why) => return println!("web bench skipped: {why}"),
    };
    first_paint(&driver);
    page_to_page(&driver);
    memory(&driver);
}

fn page_node(net: &Net, host: u8, extra: &[&str]) -> Node {
    let page = format!("{}:51580", net.addr(host));
    let mut args = vec!["--http", &page];
    args.extend(extra);
    net.node(host, &args)
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn first_paint(driver: &Driver) {
    let net = Net::new(17, 41);
    let mut node = page_node(&net, 1, &[]);
    net.peer(100, 1)
        .send_raw(&fixture_bytes("history-100k.bin"));
    assert!(node.wait_history_len(100_000));
    let mut shown = Vec::new();
    let mut paints = Vec::new();
    let browser = driver.browser(1280, 900);
    browser.goto(&node.page_url());
    for _ in 0..5 {
        let began = Instant::now();
        browser.reload();
        assert!(
            browser.wait_last(99_999, WAIT),
            "the latest chat was not shown"
        );
        shown.push(began.elapsed());
        let paint = browser.js(
            "const p = performance.getEntriesByName('first-contentful-paint')[0]; \
             return p ? p.startTime : null;",
        );
        if let Some(ms) = paint.as_f64() {
            paints.push(Duration::from_secs_f64(ms / 1000.0));
        }
    }
    println!(
        "first paint, 100k history: latest chat shown {:.1} ms after a reload (median of 5); \
         first-contentful-paint {:.1} ms",
        median(shown).as_secs_f64() * 1e3,
        median(paints).as_secs_f64() * 1e3
    );
}

fn page_to_page(driver: &Driver) {
    let net = Net::new(17, 42);
    let a = page_node(&net, 1, &[]);
    let b = page_node(&net, 2, &["--peer", &net.addr(1).to_string()]);
    let open = |node: &Node| driver.open(&node.page_url(), 1280, 900);
    let (page_a, page_b) = (open(&a), open(&b));
    let mut times = Vec::new();
    for i in 0..20 {
        let text = format!("bench chat {i}");
        let began = Instant::now();
        page_a.type_chat(&text);
        assert!(
            page_b.wait_chat(&text, WAIT).is_some(),
            "{text} did not reach page b"
        );
        times.push(began.elapsed());
    }
    let worst = *times.iter().max().expect("20 times");
    println!(
        "chat typed in page A until shown in page B: median {:.1} ms, worst {:.1} ms (of 20; \
         mining included)",
        median(times).as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
}

fn memory(driver: &Driver) {
    let net = Net::new(17, 43);
    let mut node = page_node(&net, 1, &[]);
    let pid = node.pid().expect("running");
    let url = node.page_url();
    let token = url.split("token=").nth(1).expect("a token").to_string();
    let before = proc_kb(pid, "VmRSS").expect("VmRSS");
    let page = format!("{}:51580", net.addr(1));
    let streams: Vec<thread::JoinHandle<usize>> = (0..20)
        .map(|_| {
            let mut stream = TcpStream::connect(&page).expect("the page's port");
            write!(
                stream,
                "GET /api/events?after=-1 HTTP/1.1\r\nHost: {page}\r\nAuthorization: Bearer {token}\r\n\r\n"
            )
            .expect("a request");
            stream.set_read_timeout(Some(WAIT)).expect("a timeout");
            thread::spawn(move || {
                let mut chats = 0;
                for line in BufReader::new(stream).lines() {
                    match line {
                        Ok(line) if line == "event: chat" => chats += 1,
                        Ok(_) => {}
                        Err(_) => break,
                    }
                    if chats == 50 {
                        break;
                    }
                }
                chats
            })
        })
        .collect();
    let browser = driver.browser(1280, 900);
    browser.goto(&url);
    for i in 0..50 {
        node.chat(&format!("followed {i}"));
    }
    assert!(browser.wait_chat("followed 49", WAIT).is_some());
    let during = proc_kb(pid, "VmRSS").expect("VmRSS");
    let got: Vec<usize> = streams.into_iter().map(|t| t.join().unwrap_or(0)).collect();
    assert!(
        got.iter().all(|&n| n == 50),
        "streams got {got:?} chats of 50"
    );
    println!(
        "node resident memory: {before} kB with its page idle, {during} kB with 20 live \
         streams and a browser page following 50 chats"
    );
}
