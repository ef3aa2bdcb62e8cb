//! One tower layer around every RPC: a `tracing` span (`rpc`, with the method; on completion the
//! status code and the duration as fields) and the request metrics (count by method and code,
//! latency by method).
//!
//! A refusal is complete when its response is: a trailers-only response whose headers carry the
//! code. Any other call completes when its body ends: the status of a success (and of a stream
//! that fails midway) arrives in the trailers, after the last message. A body dropped before its
//! trailers is a call the client abandoned, counted as `CANCELLED`.

use http_body::{Body, Frame, SizeHint};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::Code;
use tonic::codegen::http::{HeaderMap, Request, Response};
use tower::{Layer, Service};
use tracing::Instrument;

use crate::access::is_served_method;
use crate::metrics::{Metrics, code_name};

/// Adds [`RpcService`] around the routes.
#[derive(Clone)]
pub(crate) struct RpcLayer {
    metrics: Arc<Metrics>,
}

impl RpcLayer {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for RpcLayer {
    type Service = RpcService<S>;

    fn layer(&self, inner: S) -> RpcService<S> {
        RpcService { inner, metrics: self.metrics.clone() }
    }
}

/// Spans and counts each call of the inner service.
#[derive(Clone)]
pub(crate) struct RpcService<S> {
    inner: S,
    metrics: Arc<Metrics>,
}

impl<S, B, R> Service<Request<B>> for RpcService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    R: Body + Unpin,
{
    type Response = Response<MeteredBody<R>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let method = request.uri().path().to_string();
        let span = tracing::info_span!(
            "rpc",
            method = %method,
            code = tracing::field::Empty,
            duration_ms = tracing::field::Empty
        );
        let mut call = Call { metrics: self.metrics.clone(), method, started: Instant::now(), span: span.clone() };
        let response = self.inner.call(request).instrument(span);
        Box::pin(async move {
            match response.await {
                Ok(response) => {
                    // A trailers-only response (a refusal) is complete now: record it before the
                    // client can see it.
                    let call = match grpc_status(response.headers()) {
                        Some(code) => {
                            call.finish(code);
                            None
                        }
                        None => Some(call),
                    };
                    Ok(response.map(|inner| MeteredBody { inner, call }))
                }
                Err(e) => {
                    call.finish(Code::Unknown);
                    Err(e)
                }
            }
        })
    }
}

/// What is needed to record one call when it ends.
struct Call {
    metrics: Arc<Metrics>,
    method: String,
    started: Instant,
    span: tracing::Span,
}

impl Call {
    fn finish(&mut self, code: Code) {
        let elapsed = self.started.elapsed();
        // Paths are the client's words: as labels they would grow the metrics without bound. Only
        // the methods this server runs are labels; anything else is `unknown`.
        let label = if is_served_method(&self.method) { self.method.as_str() } else { "unknown" };
        self.metrics.rpc(label, code, elapsed);
        let duration_ms = elapsed.as_secs_f64() * 1e3;
        self.span.record("code", code_name(code));
        self.span.record("duration_ms", duration_ms);
        self.span.in_scope(|| tracing::debug!(code = code_name(code), duration_ms, "rpc finished"));
    }
}

/// The code in `grpc-status`, if the headers (or trailers) carry one.
fn grpc_status(headers: &HeaderMap) -> Option<Code> {
    headers.get("grpc-status").map(|v| Code::from_bytes(v.as_bytes()))
}

/// A response body that records its call when the trailers arrive, the body ends, or it is
/// dropped.
pub(crate) struct MeteredBody<B> {
    inner: B,
    /// The call, until it is recorded.
    call: Option<Call>,
}

impl<B> MeteredBody<B> {
    fn finish(&mut self, code: Code) {
        if let Some(mut call) = self.call.take() {
            call.finish(code);
        }
    }
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status) {
                    this.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => this.finish(Code::Unknown),
            // A body that ends without trailers carried no gRPC status: a plain success.
            Poll::Ready(None) => this.finish(Code::Ok),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        // Dropped before its status went out: the client went away, or the server is stopping.
        self.finish(Code::Cancelled);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full, StreamBody};
    use tonic::codegen::Bytes;

    fn requests(metrics: &Metrics) -> String {
        let mut text = Vec::new();
        prometheus::Encoder::encode(&prometheus::TextEncoder::new(), &metrics.registry().gather(), &mut text).unwrap();
        String::from_utf8(text)
            .unwrap()
            .lines()
            .filter(|l| l.starts_with("pixdex_rpc_requests_total"))
            .collect::<Vec<_>>()
            .join("\n")
    }

    #[tokio::test]
    async fn calls_are_counted_by_the_code_in_their_trailers_or_headers() {
        let metrics = Arc::new(Metrics::new().unwrap());
        // A unary success: data, then trailers with grpc-status 0.
        let ok = tower::service_fn(|_: Request<()>| async {
            let mut trailers = HeaderMap::new();
            trailers.insert("grpc-status", "0".parse().unwrap());
            let frames = vec![
                Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"x"))),
                Ok(Frame::trailers(trailers)),
            ];
            Ok::<_, std::convert::Infallible>(Response::new(StreamBody::new(futures::stream::iter(frames))))
        });
        let mut service = RpcLayer::new(metrics.clone()).layer(ok);
        let response =
            service.call(Request::builder().uri("/pixdex.v1.SearchService/Search").body(()).unwrap()).await.unwrap();
        response.into_body().collect().await.unwrap();
        // A refusal: trailers-only, the code in the headers, the body never polled.
        let refused = tower::service_fn(|_: Request<()>| async {
            let mut response = Response::new(Full::new(Bytes::new()));
            response.headers_mut().insert("grpc-status", "3".parse().unwrap());
            Ok::<_, std::convert::Infallible>(response)
        });
        let mut service = RpcLayer::new(metrics.clone()).layer(refused);
        for path in ["/pixdex.v1.SearchService/Search", "/pixdex.v1.ImageService/GetImage"] {
            drop(service.call(Request::builder().uri(path).body(()).unwrap()).await.unwrap());
        }
        // An unknown path is not a label of its own.
        let unimplemented = tower::service_fn(|_: Request<()>| async {
            let mut response = Response::new(Full::new(Bytes::new()));
            response.headers_mut().insert("grpc-status", "12".parse().unwrap());
            Ok::<_, std::convert::Infallible>(response)
        });
        let mut service = RpcLayer::new(metrics.clone()).layer(unimplemented);
        drop(service.call(Request::builder().uri("/made.up/Path").body(()).unwrap()).await.unwrap());
        let text = requests(&metrics);
        for line in [
            r#"pixdex_rpc_requests_total{code="OK",method="/pixdex.v1.SearchService/Search"} 1"#,
            r#"pixdex_rpc_requests_total{code="INVALID_ARGUMENT",method="/pixdex.v1.SearchService/Search"} 1"#,
            r#"pixdex_rpc_requests_total{code="INVALID_ARGUMENT",method="/pixdex.v1.ImageService/GetImage"} 1"#,
            r#"pixdex_rpc_requests_total{code="UNIMPLEMENTED",method="unknown"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        assert!(!text.contains("made.up"), "{text}");
    }
}
