//! Errors of the service and the one place they become gRPC statuses.

use pixdex_indexer::decode::DecodeError;
use pixio::Error as P;
use tonic::Status;
use tonic::codegen::http;

use crate::convert::Invalid;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ServiceError {
    #[error(transparent)]
    Collection(#[from] pixdex_core::Error),
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("model: {0}")]
    Model(#[from] pixio::Error),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Cancelled(String),
    #[error("{0}")]
    Internal(String),
}

impl ServiceError {
    pub(crate) fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidArgument(msg.into())
    }
}

impl From<Invalid> for ServiceError {
    fn from(e: Invalid) -> Self {
        Self::InvalidArgument(e.0)
    }
}

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        use pixdex_core::Error as C;
        let msg = e.to_string();
        match e {
            ServiceError::Collection(c) => match c {
                C::InvalidVector(_) | C::InvalidQuery(_) => Status::invalid_argument(msg),
                C::NotFound(_) => Status::not_found(msg),
                C::ModelMismatch { .. } | C::NoRegionGrids | C::NewerSchema { .. } => Status::failed_precondition(msg),
                // The database is unreachable or refused the query: worth retrying.
                C::Backend { .. } => {
                    tracing::error!(error = %msg, "collection store error");
                    Status::unavailable(msg)
                }
                C::Locked { .. } | C::Store { .. } | C::Corrupt { .. } | C::Index { .. } | C::Io { .. } => {
                    tracing::error!(error = %msg, "collection error");
                    Status::internal(msg)
                }
            },
            ServiceError::Decode(d) => match d {
                DecodeError::Image { .. }
                | DecodeError::Empty { .. }
                | DecodeError::Truncated { .. }
                | DecodeError::TooManyPixels { .. }
                | DecodeError::TooWide { .. } => Status::invalid_argument(msg),
                // Query bytes decode from memory; reading a file failed on the server's side.
                DecodeError::Io { .. } => Status::internal(msg),
            },
            ServiceError::Model(m) => match m {
                // The image decoded but cannot be embedded (e.g. a degenerate embedding).
                P::Input(_) => Status::invalid_argument(msg),
                // The model loaded at start; anything else going wrong in a forward pass is ours.
                P::Io { .. }
                | P::Json { .. }
                | P::Config(_)
                | P::Preprocessor(_)
                | P::Checkpoint(_)
                | P::UnknownLayout { .. }
                | P::MissingTensor { .. }
                | P::ShapeMismatch { .. }
                | P::UnexpectedTensors { .. }
                | P::UnsupportedDType { .. }
                | P::MissingFile { .. }
                | P::Hub { .. }
                | P::Device(_)
                | P::Candle(_) => {
                    tracing::error!(error = %msg, "encoder error");
                    Status::internal(msg)
                }
            },
            ServiceError::InvalidArgument(_) => Status::invalid_argument(msg),
            ServiceError::NotFound(_) => Status::not_found(msg),
            ServiceError::Unavailable(_) => Status::unavailable(msg),
            ServiceError::ResourceExhausted(_) => Status::resource_exhausted(msg),
            ServiceError::FailedPrecondition(_) => Status::failed_precondition(msg),
            ServiceError::PermissionDenied(_) => Status::permission_denied(msg),
            ServiceError::Cancelled(_) => Status::cancelled(msg),
            ServiceError::Internal(_) => Status::internal(msg),
        }
    }
}

/// tonic answers a request over the decode limit with `OUT_OF_RANGE`; the gRPC spec (and our
/// API) says `RESOURCE_EXHAUSTED`. The refusal happens before any handler runs, as a
/// trailers-only response, so it is rewritten here at the HTTP layer.
pub(crate) fn oversized_as_resource_exhausted<B>(mut res: http::Response<B>) -> http::Response<B> {
    let headers = res.headers();
    let out_of_range = headers.get("grpc-status").is_some_and(|v| v.as_bytes() == b"11");
    let too_large = headers
        .get("grpc-message")
        .and_then(|m| m.to_str().ok())
        // tonic percent-encodes the message (spaces become %20).
        .is_some_and(|m| m.replace("%20", " ").contains("message length too large"));
    if out_of_range && too_large {
        res.headers_mut().insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: &'static str, message: &'static str) -> http::Response<()> {
        let mut res = http::Response::new(());
        res.headers_mut().insert("grpc-status", http::HeaderValue::from_static(status));
        res.headers_mut().insert("grpc-message", http::HeaderValue::from_static(message));
        res
    }

    #[test]
    fn only_oversized_messages_are_rewritten() {
        let res = oversized_as_resource_exhausted(response(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%205242888%20bytes",
        ));
        assert_eq!(res.headers()["grpc-status"], "8");
        let res = oversized_as_resource_exhausted(response("11", "k is out of range"));
        assert_eq!(res.headers()["grpc-status"], "11");
        let res = oversized_as_resource_exhausted(response("3", "decoded message length too large"));
        assert_eq!(res.headers()["grpc-status"], "3");
    }

    #[test]
    fn domain_errors_map_to_their_codes() {
        let code = |e: ServiceError| Status::from(e).code();
        assert_eq!(code(pixdex_core::Error::NotFound(7).into()), tonic::Code::NotFound);
        assert_eq!(code(pixdex_core::Error::InvalidVector("dim".into()).into()), tonic::Code::InvalidArgument);
        assert_eq!(code(ServiceError::Unavailable("loading".into())), tonic::Code::Unavailable);
        let decode = pixdex_indexer::decode::decode_bytes(b"not an image", Default::default()).unwrap_err();
        assert_eq!(code(decode.into()), tonic::Code::InvalidArgument);
        assert_eq!(code(Invalid::new("k must be 1..=1000").into()), tonic::Code::InvalidArgument);
        assert_eq!(code(pixio::Error::Input("degenerate".into()).into()), tonic::Code::InvalidArgument);
        assert_eq!(code(pixio::Error::Device("lost".into()).into()), tonic::Code::Internal);
        assert_eq!(code(pixdex_core::Error::NoRegionGrids.into()), tonic::Code::FailedPrecondition);
    }
}
