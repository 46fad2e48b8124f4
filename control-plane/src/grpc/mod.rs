//! The gRPC edge: tonic services that parse requests into domain calls on
//! [`crate::service::ControlPlane`] and turn results back into protobuf. No rule lives here.

mod admin;
pub mod convert;
mod gateway;

pub use admin::AdminApi;
pub use gateway::Gateway;

use crate::secret::BearerToken;
use crate::service::ServiceError;
use tonic::{Code, Status};

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Status {
        let code = match &error {
            ServiceError::InvalidArgument { .. } => Code::InvalidArgument,
            ServiceError::NotFound { .. } => Code::NotFound,
            ServiceError::PermissionDenied(_) | ServiceError::EnrollmentRefused => {
                Code::PermissionDenied
            }
            ServiceError::Unauthenticated(_) => Code::Unauthenticated,
            ServiceError::FailedPrecondition(_) => Code::FailedPrecondition,
            ServiceError::AlreadyExists(_) => Code::AlreadyExists,
            ServiceError::Store(_) | ServiceError::Crypto(_) => Code::Internal,
        };
        if code == Code::Internal {
            tracing::error!(%error, "internal error");
        }
        Status::new(code, error.to_string())
    }
}

/// The bearer token of a request's `authorization` metadata, if any.
pub fn bearer_token(metadata: &tonic::metadata::MetadataMap) -> Option<BearerToken> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))?
        .trim();
    (!token.is_empty()).then(|| BearerToken::new(token.to_string()))
}
