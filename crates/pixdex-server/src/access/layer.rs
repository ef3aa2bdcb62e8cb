//! The tower layer that checks each call's bearer token before it reaches a service: no or an
//! unknown token is `UNAUTHENTICATED`, a read token on a method that needs write is
//! `PERMISSION_DENIED`, both answered trailers-only without touching the request body.

use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};
use tonic::Status;
use tonic::codegen::http::{HeaderMap, Request, Response, header::AUTHORIZATION};
use tower::{Layer, Service};

use super::{AccessTokens, Needs, Role, method_access};

/// Adds [`AccessService`] around the routes.
#[derive(Clone)]
pub(crate) struct AccessLayer {
    tokens: Arc<AccessTokens>,
}

impl AccessLayer {
    pub(crate) fn new(tokens: AccessTokens) -> Self {
        Self { tokens: Arc::new(tokens) }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = AccessService<S>;

    fn layer(&self, inner: S) -> AccessService<S> {
        AccessService { inner, tokens: self.tokens.clone() }
    }
}

/// Lets a call through to the inner service only with a token of the role its method needs.
#[derive(Clone)]
pub(crate) struct AccessService<S> {
    inner: S,
    tokens: Arc<AccessTokens>,
}

impl<S, B, R> Service<Request<B>> for AccessService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    R: Default,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = futures::future::Either<Ready<Result<Response<R>, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        match check(&self.tokens, request.uri().path(), request.headers()) {
            Ok(()) => futures::future::Either::Right(self.inner.call(request)),
            Err(status) => futures::future::Either::Left(ready(Ok(status.into_http()))),
        }
    }
}

/// Whether the headers carry a token good enough for `path`.
fn check(tokens: &AccessTokens, path: &str, headers: &HeaderMap) -> Result<(), Status> {
    let (needs, _) = method_access(path);
    let Needs::Role(needed) = needs else { return Ok(()) };
    let presented = bearer_token(headers).ok_or_else(|| {
        Status::unauthenticated("this server needs a token: send `authorization: Bearer TOKEN` (pixdex --token)")
    })?;
    match tokens.role_of(presented) {
        None => Err(Status::unauthenticated("the token is not valid on this server")),
        Some(role) if role < needed => Err(Status::permission_denied(match needed {
            Role::Write => "this call changes the collection or runs work on the server: it needs a write token",
            Role::Read => "this call needs a read token",
        })),
        Some(_) => Ok(()),
    }
}

/// The token of the first `authorization: Bearer …` header (the scheme is case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Option<&[u8]> {
    let value = headers.get(AUTHORIZATION)?.as_bytes();
    let (scheme, token) = value.split_at_checked(7)?;
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(b"bearer ") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;
    use tonic::codegen::http::HeaderValue;

    const R: &str = "read-token-0123456789";
    const W: &str = "write-token-0123456789";

    fn code(path: &str, authorization: Option<&str>) -> Option<Code> {
        let tokens = AccessTokens::parse(&format!("read {R}\nwrite {W}\n")).unwrap();
        let mut headers = HeaderMap::new();
        if let Some(a) = authorization {
            headers.insert(AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        check(&tokens, path, &headers).err().map(|s| s.code())
    }

    #[test]
    fn each_method_gets_the_code_its_token_earns() {
        let search = "/pixdex.v1.SearchService/Search";
        let upsert = "/pixdex.v1.ImageService/UpsertImage";
        let health = "/grpc.health.v1.Health/Check";
        let reflection = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo";
        let read = format!("Bearer {R}");
        let write = format!("bearer {W}");
        assert_eq!(code(health, None), None);
        assert_eq!(code(search, None), Some(Code::Unauthenticated));
        assert_eq!(code(reflection, None), Some(Code::Unauthenticated));
        assert_eq!(code(search, Some("Bearer wrong-token-0123456789")), Some(Code::Unauthenticated));
        assert_eq!(code(search, Some(&format!("Basic {R}"))), Some(Code::Unauthenticated));
        assert_eq!(code(search, Some("Bearer ")), Some(Code::Unauthenticated));
        assert_eq!(code(search, Some(&read)), None);
        assert_eq!(code(reflection, Some(&read)), None);
        assert_eq!(code(upsert, Some(&read)), Some(Code::PermissionDenied));
        assert_eq!(code(upsert, Some(&write)), None);
        assert_eq!(code(search, Some(&write)), None);
        // Unknown methods need a token before the router says UNIMPLEMENTED.
        assert_eq!(code("/pixdex.v1.SearchService/Nope", None), Some(Code::Unauthenticated));
        assert_eq!(code("/pixdex.v1.SearchService/Nope", Some(&read)), None);
    }

    #[tokio::test]
    async fn a_refused_call_never_reaches_the_service() {
        use tower::ServiceExt;
        let tokens = AccessTokens::parse(&format!("read {R}\n")).unwrap();
        let reached = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = reached.clone();
        let inner = tower::service_fn(move |_: Request<()>| {
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            async { Ok::<_, std::convert::Infallible>(Response::new(String::new())) }
        });
        let service = AccessLayer::new(tokens).layer(inner);
        let request =
            |auth: &str| Request::builder().uri("/pixdex.v1.ImageService/DeleteImage").header(AUTHORIZATION, auth);
        let denied = service.clone().oneshot(request(&format!("Bearer {R}")).body(()).unwrap()).await.unwrap();
        assert_eq!(denied.headers().get("grpc-status").unwrap(), "7");
        let unauthenticated = service.clone().oneshot(request("Bearer nope").body(()).unwrap()).await.unwrap();
        assert_eq!(unauthenticated.headers().get("grpc-status").unwrap(), "16");
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 0);
        let search = Request::builder()
            .uri("/pixdex.v1.SearchService/Search")
            .header(AUTHORIZATION, format!("Bearer {R}"))
            .body(())
            .unwrap();
        service.oneshot(search).await.unwrap();
        assert_eq!(reached.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
