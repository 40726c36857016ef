//! The page: the chat in a browser, served by the node over HTTP on a
//! loopback address (docs/HTTP.md). It runs on a thread of its own, with
//! its own tokio runtime (axum on hyper), and reaches the node only as a
//! client of its control socket ([`link`]): the event loop does not know
//! it is there. Every request but the page's own files needs the data
//! directory's token ([`token`]); the checks are in [`guard`], the bounds
//! in [`serve`] and [`live`].

mod guard;
mod link;
mod live;
mod routes;
mod serve;
mod token;

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use link::Link;
use live::Live;
use token::Token;

use crate::control::{SOCKET_FILE, client};

/// The page's port when `--http` does not say.
pub const DEFAULT_PORT: u16 = 51580;
/// The file in the data directory that holds the running node's page URL,
/// token included (mode 0600), for `node url`.
pub const URL_FILE: &str = "http-url";

/// Where the flags say to serve the page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// The default: [`default_addr`]; a port in use is said and the node
    /// goes on without a page.
    Default,
    /// `--http ADDR:PORT`: there, or the node does not start.
    At(SocketAddrV4),
    /// `--no-http`.
    Off,
}

/// What the routes share.
pub struct Shared {
    link: Link,
    token: Token,
    /// The Host header values served (`IP:PORT`, `localhost:PORT`).
    hosts: Vec<String>,
    /// The origins of the page (`http://` and a host).
    origins: Vec<String>,
    /// The token cookie's name (per port: cookies do not tell ports apart).
    cookie: String,
    live: Live,
    read_timeout: Duration,
}

/// The page's address by default: the node's `--bind` address when it is
/// a loopback one (so that the README's nodes on 127.0.0.1, .2 and .3
/// each have their own), else 127.0.0.1; port [`DEFAULT_PORT`].
pub fn default_addr(bind: Ipv4Addr) -> SocketAddrV4 {
    let ip = if bind.is_loopback() {
        bind
    } else {
        Ipv4Addr::LOCALHOST
    };
    SocketAddrV4::new(ip, DEFAULT_PORT)
}

/// Starts serving the page of the node whose data directory is `dir` (its
/// control socket in it), as `serve` says, and returns its URL with the
/// token (also written to [`URL_FILE`]); `None` when no page is served.
///
/// # Errors
/// The page was asked for explicitly (`--http`) and cannot be served
/// there (address in use, not this machine's, `0.0.0.0`), or the token
/// file cannot be had; in words.
pub fn start(
    serve: Serve,
    bind: Ipv4Addr,
    dir: &Path,
    read_timeout: Duration,
) -> Result<Option<String>, String> {
    let url_file = dir.join(URL_FILE);
    let _ = fs::remove_file(&url_file);
    let addr = match serve {
        Serve::Off => return Ok(None),
        Serve::Default => default_addr(bind),
        Serve::At(addr) if addr.ip().is_unspecified() => {
            return Err(format!(
                "--http {addr}: give the address the page is opened at (the Host check \
                 needs it), such as 127.0.0.1:{}",
                addr.port()
            ));
        }
        Serve::At(addr) => addr,
    };
    let listener = match TcpListener::bind(addr) {
        Ok(listener) => listener,
        Err(e) if serve == Serve::Default => {
            log::warn!(
                "no page: cannot serve it on {addr} ({e}); the node goes on without it \
                 (--http IP:PORT serves it elsewhere)"
            );
            return Ok(None);
        }
        Err(e) => return Err(format!("cannot serve the page on {addr} (--http): {e}")),
    };
    if !addr.ip().is_loopback() {
        log::warn!(
            "the page is served on {addr}, which is not a loopback address: it is reachable \
             from the network, by anyone who can reach this address (the token still guards it)"
        );
    }
    let token = Token::load_or_create(dir)?;
    let url = format!("http://{addr}/?token={}", token.as_str());
    let hosts = vec![addr.to_string(), format!("localhost:{}", addr.port())];
    let shared = Arc::new(Shared {
        link: Link::new(dir.join(SOCKET_FILE)),
        token,
        origins: hosts.iter().map(|h| format!("http://{h}")).collect(),
        hosts,
        cookie: format!("chatchain-{}", addr.port()),
        live: Live::new(),
        read_timeout,
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the page's runtime: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot serve the page: {e}"))?;
    std::thread::Builder::new()
        .name("page".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => return log::error!("cannot serve the page: {e}"),
                };
                tokio::spawn(live::follow(shared.clone()));
                tokio::spawn(live::sample_peers(shared.clone()));
                serve::run(listener, routes::router(shared), read_timeout).await;
            });
        })
        .map_err(|e| format!("cannot start the page's thread: {e}"))?;
    write_private(&url_file, &url).map_err(|e| format!("{}: {e}", url_file.display()))?;
    Ok(Some(url))
}

fn write_private(path: &Path, text: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    writeln!(file, "{text}")
}

/// `chatchain url`: prints the page's URL (with its token) of the node
/// running with data directory `dir` (with `json`, `{"reply":"url",
/// "url":…}`). Exit statuses as the other client subcommands': 3 when no
/// node runs there, 4 when it is another user's, 1 when it serves no
/// page; why on stderr (in JSON, on stdout).
pub fn print_url(dir: &Path, json: bool) -> ExitCode {
    if let Err(failed) = client::reach(dir) {
        return failed.exit(json);
    }
    match fs::read_to_string(dir.join(URL_FILE)) {
        Ok(url) if json => {
            let reply = serde_json::json!({"reply": "url", "url": url.trim_end()});
            let _ = writeln!(io::stdout(), "{reply}");
            ExitCode::SUCCESS
        }
        Ok(url) => {
            let _ = write!(io::stdout(), "{url}");
            ExitCode::SUCCESS
        }
        Err(_) => client::Failed::refused(format!(
            "the node of {} serves no page (started with --no-http, or its port was in use: \
             see its start-up lines)",
            dir.display()
        ))
        .exit(json),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_loopback_node_has_its_own_page_and_others_127_0_0_1() {
        let at = |a, b, c, d| default_addr(Ipv4Addr::new(a, b, c, d));
        assert_eq!(at(127, 0, 0, 2).to_string(), "127.0.0.2:51580");
        assert_eq!(at(127, 0, 0, 3).to_string(), "127.0.0.3:51580");
        assert_eq!(at(0, 0, 0, 0).to_string(), "127.0.0.1:51580");
        assert_eq!(at(192, 168, 1, 5).to_string(), "127.0.0.1:51580");
    }

    #[test]
    fn the_unspecified_address_is_refused_and_no_page_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let off = start(
            Serve::Off,
            Ipv4Addr::LOCALHOST,
            dir.path(),
            Duration::from_secs(1),
        );
        assert_eq!(off, Ok(None));
        let any = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 51580);
        let refused = start(
            Serve::At(any),
            Ipv4Addr::LOCALHOST,
            dir.path(),
            Duration::from_secs(1),
        );
        assert!(refused.unwrap_err().contains("Host check"));
    }
}
