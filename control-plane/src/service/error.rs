//! The use cases' error type, and the one table that classifies each error as a status code: the
//! audit log records the code's name, and the gRPC edge answers with it. The codes are plain
//! values here, so the domain stays free of tonic; `grpc/mod.rs` maps each to a `tonic::Code`.

use crate::crypto::CryptoError;
use crate::rbac::Denied;
use crate::store::StoreError;

/// Errors of the admin and gateway use cases; `code()` classifies each one, for the audit log and
/// the gRPC edge alike.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("invalid {field}: {problem}")]
    InvalidArgument {
        field: &'static str,
        problem: String,
    },
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("permission denied: {0}")]
    PermissionDenied(#[from] Denied),
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("the enrollment token is unknown, used up or expired")]
    EnrollmentRefused,
    /// A per-caller limit is reached (what, and the limit's setting).
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("storage: {0}")]
    Store(StoreError),
    #[error("crypto: {0}")]
    Crypto(#[from] CryptoError),
}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> ServiceError {
        match error {
            StoreError::AlreadyExists { kind, name } => {
                ServiceError::AlreadyExists(format!("{kind} {name:?} already exists"))
            }
            StoreError::NotFound { kind, name } => ServiceError::NotFound {
                what: kind,
                id: name,
            },
            StoreError::EnrollmentTokenInvalid => ServiceError::EnrollmentRefused,
            StoreError::EnrollmentOwnership { expected } => ServiceError::InvalidArgument {
                field: "ownership",
                problem: format!(
                    "the token re-enrolls a {} device, so it must enroll as one",
                    expected.as_str().to_uppercase()
                ),
            },
            e @ (StoreError::BuiltInRole(_)
            | StoreError::RoleInUse(_)
            | StoreError::WouldLockOut) => ServiceError::FailedPrecondition(e.to_string()),
            other => ServiceError::Store(other),
        }
    }
}

impl ServiceError {
    pub(super) fn invalid(field: &'static str, problem: impl Into<String>) -> ServiceError {
        ServiceError::InvalidArgument {
            field,
            problem: problem.into(),
        }
    }

    /// The status code this error answers with, on the wire and in the audit log.
    pub(crate) fn code(&self) -> StatusCode {
        match self {
            ServiceError::InvalidArgument { .. } => StatusCode::InvalidArgument,
            ServiceError::NotFound { .. } => StatusCode::NotFound,
            ServiceError::PermissionDenied(_) | ServiceError::EnrollmentRefused => {
                StatusCode::PermissionDenied
            }
            ServiceError::Unauthenticated(_) => StatusCode::Unauthenticated,
            ServiceError::FailedPrecondition(_) => StatusCode::FailedPrecondition,
            ServiceError::AlreadyExists(_) => StatusCode::AlreadyExists,
            ServiceError::ResourceExhausted(_) => StatusCode::ResourceExhausted,
            ServiceError::Store(_) | ServiceError::Crypto(_) => StatusCode::Internal,
        }
    }
}

/// The status codes a use case fails with: the gRPC codes the control plane answers with, by
/// their gRPC names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StatusCode {
    InvalidArgument,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    FailedPrecondition,
    AlreadyExists,
    ResourceExhausted,
    Internal,
}

impl StatusCode {
    /// The gRPC name of the code, as the audit log records it for a failed call.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StatusCode::InvalidArgument => "INVALID_ARGUMENT",
            StatusCode::NotFound => "NOT_FOUND",
            StatusCode::PermissionDenied => "PERMISSION_DENIED",
            StatusCode::Unauthenticated => "UNAUTHENTICATED",
            StatusCode::FailedPrecondition => "FAILED_PRECONDITION",
            StatusCode::AlreadyExists => "ALREADY_EXISTS",
            StatusCode::ResourceExhausted => "RESOURCE_EXHAUSTED",
            StatusCode::Internal => "INTERNAL",
        }
    }
}
