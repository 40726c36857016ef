//! Connections: accepted up to [`MAX_CONNECTIONS`] at once (one more is
//! closed at once), each with a send buffer of [`SEND_BUFFER`], served by hyper's HTTP/1.1 with request heads of
//! at most [`MAX_HEAD`] bytes that must come whole within the read timeout
//! (a slow or idle client is closed then), and every answer but the live
//! stream given within [`ANSWER_WAIT`]. Each refusal is said at info.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use log::info;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{sleep, timeout};

use super::live::Kill;
use super::routes::refuse;

/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The largest request head (request line and headers) read.
pub const MAX_HEAD: usize = 16 << 10;
/// The kernel's send buffer of a connection (Linux doubles it): without
/// it, the buffer of a client that reads nothing grows to megabytes.
pub const SEND_BUFFER: usize = 64 << 10;
/// The longest a request may take, its body included, but the live
/// stream: the control client's longest wait (a `chat`'s), and some.
pub const ANSWER_WAIT: Duration = Duration::from_secs(65);

/// Serves `app` on `listener` until the process ends; `read_timeout`
/// bounds the wait for a request's head.
pub async fn run(listener: TcpListener, app: Router, read_timeout: Duration) {
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, most likely: let some close.
                info!("page: cannot accept a connection: {e}");
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            info!("page: a connection from {from} closed: {MAX_CONNECTIONS} are open");
            continue;
        };
        if let Err(e) = socket2::SockRef::from(&stream).set_send_buffer_size(SEND_BUFFER) {
            info!("page: a connection from {from} keeps its send buffer: {e}");
        }
        let kill = Kill::default();
        let service = TowerToHyperService::new(app.clone().layer(axum::Extension(kill.clone())));
        tokio::spawn(async move {
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(read_timeout)
                .max_buf_size(MAX_HEAD)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                served = connection => {
                    if let Err(e) = served {
                        info!("page: a connection from {from} closed: {e}");
                    }
                }
                () = kill.0.notified() => {}
            }
            drop(place);
        });
    }
}

/// Ends a request that takes longer than [`ANSWER_WAIT`] (a body sent
/// slowly, a node that does not answer), but the live stream (408).
pub async fn within_time(request: Request, next: Next) -> Response {
    if request.uri().path() == "/api/events" {
        return next.run(request).await;
    }
    match timeout(ANSWER_WAIT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            info!(
                "page: a request took over {} s: ended",
                ANSWER_WAIT.as_secs()
            );
            refuse(StatusCode::REQUEST_TIMEOUT, "the request took too long")
        }
    }
}
