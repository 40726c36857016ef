//! A real browser for the page's tests: Debian's `chromium`, headless,
//! driven over WebDriver by its `chromedriver` ([`Driver`]) through the
//! fantoccini crate ([`Browser`]). Each browser has a fresh profile and
//! the flags that keep it off the network (no lookups, no updates); each
//! call waits at most [`WAIT`]-bound times. Where either program is
//! missing, [`Driver::start`] says why and the test skips.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use super::{WAIT, poll};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A `chromedriver` on 127.0.0.1, killed on drop.
pub struct Driver {
    child: Child,
    port: u16,
}

impl Driver {
    /// Starts `chromedriver` on 127.0.0.1:`port` and waits until it
    /// listens.
    ///
    /// # Errors
    /// Chromium or chromedriver is not installed (`.ci/run` installs them
    /// as root), or the driver did not start: the test says so and skips.
    pub fn start(port: u16) -> Result<Driver, String> {
        for program in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(program).exists() {
                return Err(format!(
                    "{program} is missing (Debian's chromium and chromium-driver packages)"
                ));
            }
        }
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {CHROMEDRIVER}: {e}"))?;
        let driver = Driver { child, port };
        poll(WAIT, || TcpStream::connect(("127.0.0.1", port)).ok())
            .ok_or_else(|| format!("{CHROMEDRIVER} did not listen on port {port}"))?;
        Ok(driver)
    }

    /// A new headless browser window of `width` x `height` CSS pixels.
    pub fn browser(&self, width: u32, height: u32) -> Browser {
        let profile = tempfile::Builder::new()
            .prefix("chromium-e2e-")
            .tempdir()
            .expect("a profile directory");
        let args = [
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let mut capabilities = serde_json::Map::new();
        capabilities.insert(
            "goog:chromeOptions".into(),
            json!({"binary": CHROMIUM, "args": args}),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the WebDriver client");
        let url = format!("http://127.0.0.1:{}", self.port);
        // Timers need the runtime's context: made inside `block_on`.
        let client = runtime
            .block_on(async {
                tokio::time::timeout(
                    WAIT * 2,
                    ClientBuilder::new(HttpConnector::new())
                        .capabilities(capabilities)
                        .connect(&url),
                )
                .await
            })
            .expect("chromium started within 30 s")
            .expect("a WebDriver session");
        Browser {
            runtime,
            client: Some(client),
            _profile: profile,
        }
    }
}

impl Driver {
    /// A new browser of `width` x `height` on the page at `url` (its URL
    /// with the token), once the page says its live stream is open.
    pub fn open(&self, url: &str, width: u32, height: u32) -> Browser {
        let browser = self.browser(width, height);
        browser.goto(url);
        let live = browser.wait_js(
            "return document.getElementById('link').textContent;",
            WAIT,
            |v| v == "live",
        );
        assert!(live.is_some(), "the page at {url} never went live");
        browser
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser window (its own Chromium), closed on drop.
pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    _profile: tempfile::TempDir,
}

impl Browser {
    fn client(&self) -> &Client {
        self.client.as_ref().expect("open until dropped")
    }

    fn run<T>(&self, what: &str, call: impl Future<Output = Result<T, impl std::fmt::Debug>>) -> T {
        match self
            .runtime
            .block_on(async { tokio::time::timeout(WAIT, call).await })
        {
            Ok(Ok(value)) => value,
            Ok(Err(e)) => panic!("browser: {what}: {e:?}"),
            Err(_) => panic!("browser: {what}: no answer within {WAIT:?}"),
        }
    }

    /// Opens `url` (returns once it has loaded).
    pub fn goto(&self, url: &str) {
        self.run("goto", self.client().goto(url));
    }

    /// Reloads the page.
    pub fn reload(&self) {
        self.run("reload", self.client().refresh());
    }

    /// Runs `script` (a function body; `return` gives its value).
    pub fn js(&self, script: &str) -> Value {
        self.run("script", self.client().execute(script, Vec::new()))
    }

    /// Polls `script` until `done` holds of its value (or `timeout`
    /// passes: `None`).
    pub fn wait_js(
        &self,
        script: &str,
        timeout: Duration,
        done: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let value = self.js(script);
            if done(&value) {
                return Some(value);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The chats the page shows, in its order: (index, text).
    pub fn chats(&self) -> Vec<(u64, String)> {
        let rows = self.js("return [...document.querySelectorAll('#chats li')]\
             .map(li => [Number(li.dataset.index), li.querySelector('.text').textContent]);");
        serde_json::from_value(rows).expect("rows of [index, text]")
    }

    /// Waits until the page shows a chat `text` (its index), at most
    /// `timeout`.
    pub fn wait_chat(&self, text: &str, timeout: Duration) -> Option<u64> {
        poll(timeout, || {
            self.chats()
                .into_iter()
                .find(|(_, shown)| shown == text)
                .map(|(index, _)| index)
        })
    }

    /// Waits until the page's last chat is the one of `index` (at most
    /// `timeout`); whether it came.
    pub fn wait_last(&self, index: u64, timeout: Duration) -> bool {
        let script = "const li = document.querySelector('#chats li:last-child'); \
                      return li ? Number(li.dataset.index) : null;";
        self.wait_js(script, timeout, |v| v == index).is_some()
    }

    /// Types `text` in the send box and presses Enter.
    pub fn type_chat(&self, text: &str) {
        let input = self.run("find #text", self.client().find(Locator::Id("text")));
        self.run("type", input.send_keys(&format!("{text}\u{e007}")));
    }

    /// Sets the window's size (CSS pixels).
    pub fn resize(&self, width: u32, height: u32) {
        self.run("resize", self.client().set_window_size(width, height));
    }

    /// Saves a PNG of the window at `path` and returns it.
    pub fn screenshot(&self, path: PathBuf) -> PathBuf {
        let png = self.run("screenshot", self.client().screenshot());
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self
                .runtime
                .block_on(async { tokio::time::timeout(WAIT, client.close()).await });
        }
    }
}
