//! The gRPC edge's answer to an oversize message. tonic refuses a message above a service's
//! decoding limit with OUT_OF_RANGE, while gRPC's status-code contract says RESOURCE_EXHAUSTED
//! for a message larger than the receiver accepts: [`OversizeIsExhausted`] rewrites the status of
//! a call refused that way, and [`oversize_is_exhausted`] the status a stream read returns.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::codegen::http;
use tonic::{Code, Status};

/// The start of tonic's refusal of a message above the decoding limit.
const TOO_LARGE: &str = "Error, decoded message length too large";

/// RESOURCE_EXHAUSTED for tonic's refusal of an oversize message; any other status unchanged.
pub(crate) fn oversize_is_exhausted(status: Status) -> Status {
    if status.code() == Code::OutOfRange && status.message().starts_with(TOO_LARGE) {
        Status::resource_exhausted(format!(
            "the message is larger than this service accepts ({})",
            status.message().trim_start_matches("Error, ")
        ))
    } else {
        status
    }
}

/// Wraps a tonic service so that a call refused for an oversize request answers
/// RESOURCE_EXHAUSTED (the refusal is a trailers-only response: its status is in the headers).
#[derive(Clone, Debug)]
pub struct OversizeIsExhausted<S> {
    inner: S,
}

impl<S> OversizeIsExhausted<S> {
    pub fn new(inner: S) -> OversizeIsExhausted<S> {
        OversizeIsExhausted { inner }
    }
}

impl<S: tonic::server::NamedService> tonic::server::NamedService for OversizeIsExhausted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> tonic::codegen::Service<http::Request<B>> for OversizeIsExhausted<S>
where
    S: tonic::codegen::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            if let Some(status) = Status::from_header_map(response.headers()) {
                let rewritten = oversize_is_exhausted(status);
                if rewritten.code() == Code::ResourceExhausted {
                    // Replaces grpc-status and grpc-message; a status tonic built always encodes.
                    let _ = rewritten.add_header(response.headers_mut());
                }
            }
            Ok(response)
        })
    }
}
