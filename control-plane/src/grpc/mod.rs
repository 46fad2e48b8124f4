//! The gRPC edge: tonic services that parse requests into domain calls on
//! [`crate::service::ControlPlane`] and turn results back into protobuf. No rule lives here.

mod admin;
mod connections;
pub mod convert;
mod gateway;
mod oversize;
mod peer_limits;
mod watch;

pub use admin::AdminApi;
pub(crate) use connections::accept_connections;
pub use gateway::Gateway;
pub use oversize::OversizeIsExhausted;
pub use peer_limits::PeerLimited;
pub(crate) use peer_limits::PeerLimits;

use crate::secret::BearerToken;
use crate::service::{ServiceError, StatusCode};
use tonic::{Code, Status};

impl From<ServiceError> for Status {
    fn from(error: ServiceError) -> Status {
        let code = error.code();
        if code == StatusCode::Internal {
            tracing::error!(%error, "internal error");
        }
        Status::new(grpc_code(code), error.to_string())
    }
}

/// The tonic code of a status code; [`ServiceError::code`] decides which error gets which.
fn grpc_code(code: StatusCode) -> Code {
    match code {
        StatusCode::InvalidArgument => Code::InvalidArgument,
        StatusCode::NotFound => Code::NotFound,
        StatusCode::PermissionDenied => Code::PermissionDenied,
        StatusCode::Unauthenticated => Code::Unauthenticated,
        StatusCode::FailedPrecondition => Code::FailedPrecondition,
        StatusCode::AlreadyExists => Code::AlreadyExists,
        StatusCode::ResourceExhausted => Code::ResourceExhausted,
        StatusCode::Internal => Code::Internal,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Permission;
    use crate::rbac::Denied;
    use crate::store::StoreError;

    /// `Code::InvalidArgument` as gRPC spells it: `INVALID_ARGUMENT`.
    fn grpc_name(code: Code) -> String {
        let mut name = String::new();
        for (i, c) in format!("{code:?}").chars().enumerate() {
            if c.is_ascii_uppercase() && i > 0 {
                name.push('_');
            }
            name.push(c.to_ascii_uppercase());
        }
        name
    }

    /// The audit log records a failed call by the name of the status the caller received.
    #[test]
    fn audit_results_name_the_grpc_status_sent() {
        let errors = [
            (
                ServiceError::InvalidArgument {
                    field: "device_id",
                    problem: "must not be empty".into(),
                },
                "INVALID_ARGUMENT",
            ),
            (
                ServiceError::NotFound {
                    what: "device",
                    id: "dev_1".into(),
                },
                "NOT_FOUND",
            ),
            (
                ServiceError::PermissionDenied(Denied {
                    missing: vec![Permission::AuditRead],
                }),
                "PERMISSION_DENIED",
            ),
            (ServiceError::EnrollmentRefused, "PERMISSION_DENIED"),
            (
                ServiceError::Unauthenticated("unknown bearer token"),
                "UNAUTHENTICATED",
            ),
            (
                ServiceError::FailedPrecondition("too late".into()),
                "FAILED_PRECONDITION",
            ),
            (ServiceError::AlreadyExists("role".into()), "ALREADY_EXISTS"),
            (
                ServiceError::ResourceExhausted("64 watches".into()),
                "RESOURCE_EXHAUSTED",
            ),
            (
                ServiceError::Store(StoreError::Corrupt("bad row".into())),
                "INTERNAL",
            ),
        ];
        for (error, expected) in errors {
            let audited = error.code().as_str();
            let sent = Status::from(error).code();
            assert_eq!(audited, expected);
            assert_eq!(grpc_name(sent), expected);
        }
    }

    /// The key ids the gateway sends beside signatures are the ones devices compute from the
    /// public key (PROTOCOL.md CP-KEY-1); the domain's key ring computes them without the proto.
    #[test]
    fn the_key_ring_names_signing_keys_as_the_protocol_does() {
        assert_eq!(
            crate::crypto::KEY_ID_LEN,
            droidfleet_proto::signing::KEY_ID_LEN
        );
        let dir = tempfile::tempdir().unwrap();
        let keys = crate::crypto::KeyRing::load_or_create(dir.path()).unwrap();
        assert_eq!(
            keys.signing_key_id(),
            droidfleet_proto::signing::key_id(keys.signing_public_key())
        );
    }
}
