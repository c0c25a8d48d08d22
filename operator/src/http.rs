//! `/metrics`, `/healthz` and `/readyz` on `--metrics-addr`, for
//! Prometheus and the kubelet's probes.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::{Metrics, Readiness};

/// What the endpoints read.
#[derive(Clone, Debug)]
pub struct State {
    /// Served at `/metrics`.
    pub metrics: Metrics,
    /// `/readyz` answers 200 once set.
    pub ready: Arc<Readiness>,
}

fn answer(state: &State, path: &str) -> Response<Full<Bytes>> {
    let (status, body) = match path {
        "/metrics" => (StatusCode::OK, state.metrics.render()),
        "/healthz" => (StatusCode::OK, "ok\n".to_owned()),
        "/readyz" if state.ready.get() => (StatusCode::OK, "ready\n".to_owned()),
        "/readyz" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "not connected to the apiserver yet\n".to_owned(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "try /metrics, /healthz or /readyz\n".to_owned(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

/// Binds `addr`; the returned future serves until dropped.
///
/// # Errors
/// When the address cannot be bound.
pub async fn bind(
    addr: SocketAddr,
    state: State,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()>)> {
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let serve = async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let resp = answer(&state, req.uri().path());
                    async move { Ok::<_, Infallible>(resp) }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    };
    Ok((bound, serve))
}
