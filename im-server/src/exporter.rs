//! The Prometheus endpoint (feature `metrics`): installs the process's
//! recorder, serves `GET /metrics` on an address of its own, samples the
//! node-wide gauges at scrape time, and times HTTP API requests. The
//! series themselves are named in [`crate::metrics`].

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ServerError;
use crate::handle::Shared;

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use. `Err`
/// when another recorder was installed first (an embedder's own).
fn recorder() -> Result<PrometheusHandle, ServerError> {
    if let Some(h) = RECORDER.get() {
        return Ok(h.clone());
    }
    let recorder = PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
            &[
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5, 5.0,
            ],
        )
        .and_then(|b| {
            b.set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Full(
                    imkit_core::telemetry::STORE_BATCH_SIZE.into(),
                ),
                &[
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
                ],
            )
        })
        .map_err(|e| ServerError::Config(format!("metrics: {e}")))?
        .build_recorder();
    let handle = recorder.handle();
    // Two servers racing here: one installs, the other finds it.
    let _guard = INSTALL.lock();
    if let Some(h) = RECORDER.get() {
        return Ok(h.clone());
    }
    metrics::set_global_recorder(recorder).map_err(|_| {
        ServerError::Config(
            "metrics: another metrics recorder is installed in this process; serve it \
             yourself instead of ServerBuilder::metrics"
                .into(),
        )
    })?;
    let _ = RECORDER.set(handle.clone());
    Ok(handle)
}

static INSTALL: parking_lot::Mutex<()> = parking_lot::Mutex::new(());

/// The bound `/metrics` listener.
pub(crate) struct Exporter {
    listener: TcpListener,
    handle: PrometheusHandle,
}

impl Exporter {
    /// Installs the recorder and binds `addr`.
    pub(crate) async fn bind(addr: &str) -> Result<Exporter, ServerError> {
        let handle = recorder()?;
        let listener = crate::transport::listen(addr, 128)
            .await
            .map_err(|source| ServerError::Bind {
                what: "metrics",
                addr: addr.to_owned(),
                source,
            })?;
        Ok(Exporter { listener, handle })
    }

    pub(crate) fn local_addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }

    /// Serves `GET /metrics` until `stop`.
    pub(crate) async fn serve(self, shared: Arc<Shared>, stop: CancellationToken) {
        if let Some(addr) = self.local_addr() {
            tracing::info!(kind = "metrics", %addr, "listening");
        }
        let app = axum::Router::new()
            .route("/metrics", axum::routing::get(scrape))
            .with_state((shared, self.handle));
        let served = axum::serve(self.listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "the metrics listener stopped");
        }
    }
}

async fn scrape(
    State((shared, handle)): State<(Arc<Shared>, PrometheusHandle)>,
) -> impl IntoResponse {
    let registry = shared.router.registry();
    metrics::gauge!(crate::metrics::SESSIONS).set(registry.len() as f64);
    let queued: usize = registry.all().iter().map(|c| c.outbox.queued_bytes()).sum();
    metrics::gauge!(crate::metrics::OUTBOX_BYTES).set(queued as f64);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
}

/// Counts and times every HTTP API request by its route pattern (never
/// the raw path, whose ids would make a series per user).
pub(crate) async fn http_layer(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!(crate::metrics::HTTP_REQUESTS, "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!(crate::metrics::HTTP_SECONDS, "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
