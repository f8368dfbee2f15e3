//! The HTTP listener with its limits: a connection cap, a deadline for
//! request headers that also closes idle kept-alive connections
//! (slowloris), a body read timeout, a timeout for the whole request, and a
//! cap on requests handled at once. hyper's and tower-http's own knobs do
//! the work; this file wires them to [`HttpOptions`].

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use super::{AppState, HttpOptions, router};
use crate::transport::Socket;

/// How long a shutdown waits for requests in flight.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(5);

/// What a connection over the limit is told before it is closed.
const OVER_LIMIT: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nretry-after: 1\r\n\
content-type: application/json\r\nconnection: close\r\ncontent-length: 86\r\n\r\n\
{\"error\":{\"code\":5003,\"name\":\"Overloaded\",\"message\":\"HTTP connection limit reached\"}}\n";

/// Serves the API on `listener` until `shutdown`, with at most
/// `max_connections` connections at once, over TLS when `tls` is set (the
/// handshake shares the header deadline).
pub(crate) async fn serve(
    listener: TcpListener,
    state: AppState,
    max_connections: usize,
    shutdown: CancellationToken,
    #[cfg(feature = "tls")] tls: Option<crate::tls::Tls>,
) {
    #[cfg(feature = "tls")]
    let tls_on = tls.is_some();
    #[cfg(not(feature = "tls"))]
    let tls_on = false;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(kind = "http", %addr, max_connections, tls = tls_on, "listening");
    }
    let options: Arc<HttpOptions> = state.options.clone();
    let app = router(state);
    #[cfg(feature = "metrics")]
    let app = app.layer(axum::middleware::from_fn(crate::exporter::http_layer));
    let app = app
        .layer(GlobalConcurrencyLimitLayer::new(
            options.max_concurrent_requests,
        ))
        .layer(RequestBodyTimeoutLayer::new(options.body_timeout))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            options.request_timeout,
        ));
    let service = TowerToHyperService::new(app);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(options.header_timeout)
        .max_buf_size(options.max_header_bytes.max(8 * 1024));
    let permits = Arc::new(Semaphore::new(max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                // Out of file descriptors and the like: back off briefly.
                tracing::warn!(kind = "http", error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            tokio::spawn(async move {
                let mut stream = stream;
                let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(OVER_LIMIT))
                    .await;
            });
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (http, service, watcher) = (http.clone(), service.clone(), graceful.watcher());
        #[cfg(feature = "tls")]
        let tls = tls.clone();
        let header_timeout = options.header_timeout;
        tokio::spawn(async move {
            let socket = Socket::Plain(stream);
            #[cfg(feature = "tls")]
            let socket = match (&tls, socket) {
                (Some(tls), Socket::Plain(stream)) => {
                    let Some(s) = tls.accept(stream, header_timeout, &peer).await else {
                        return;
                    };
                    Socket::Tls(Box::new(s))
                }
                (_, socket) => socket,
            };
            let _ = header_timeout;
            let conn = watcher.watch(http.serve_connection(TokioIo::new(socket), service));
            if let Err(e) = conn.await {
                tracing::debug!(kind = "http", %peer, error = %e, "connection ended");
            }
            drop(permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_WAIT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some HTTP requests did not finish within the shutdown wait");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_over_limit_answer_is_well_formed() {
        let text = std::str::from_utf8(super::OVER_LIMIT).expect("ascii");
        let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|v| v.parse().ok())
            .expect("content-length");
        assert_eq!(body.len(), len);
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["code"], 5003);
    }
}
