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

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn state() -> State {
        State {
            metrics: Metrics::new().unwrap(),
            ready: Arc::new(Readiness::default()),
        }
    }

    async fn body(resp: Response<Full<Bytes>>) -> (StatusCode, String) {
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (status, String::from_utf8(bytes.to_vec()).unwrap())
    }

    /// `/healthz` is liveness only: 200 `ok` from the start, before the
    /// apiserver is reached, so a slow apiserver never gets the pod killed.
    #[tokio::test]
    async fn healthz_answers_ok_before_and_after_readiness() {
        let s = state();
        for ready in [false, true] {
            if ready {
                s.ready.set();
            }
            let got = body(answer(&s, "/healthz")).await;
            assert_eq!(got, (StatusCode::OK, "ok\n".to_owned()), "ready: {ready}");
        }
    }

    #[tokio::test]
    async fn readyz_waits_for_the_apiserver() {
        let s = state();
        let (status, text) = body(answer(&s, "/readyz")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(text.contains("apiserver"), "{text}");
        s.ready.set();
        assert_eq!(
            body(answer(&s, "/readyz")).await,
            (StatusCode::OK, "ready\n".to_owned())
        );
    }

    #[tokio::test]
    async fn metrics_are_text_and_unknown_paths_404() {
        let s = state();
        let (status, text) = body(answer(&s, "/metrics")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(text.contains("tributary_operator_leader"), "{text}");
        let (status, text) = body(answer(&s, "/nope")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(text.contains("/healthz"), "{text}");
    }

    /// Over a real socket, as the kubelet probes it.
    #[tokio::test]
    async fn serves_healthz_over_http() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (addr, serve) = bind("127.0.0.1:0".parse().unwrap(), state()).await.unwrap();
        let server = tokio::spawn(serve);
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut reply = String::new();
        conn.read_to_string(&mut reply).await.unwrap();
        server.abort();
        assert!(reply.starts_with("HTTP/1.1 200 OK"), "{reply}");
        assert!(reply.ends_with("\r\n\r\nok\n"), "{reply}");
    }
}
