//! The typed admin-API client every tool shares: connect with an admin's bearer token (given, or
//! read from a file), then one method per admin RPC, each error naming the RPC that failed.

use crate::causes::with_causes;
use droidfleet_proto::tls::{CA_CERT_FILE, CaFingerprint, TlsError};
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_client::AdminServiceClient;
use droidfleet_telemetry::traceparent::{TRACEPARENT_KEY, TraceParent};
use ring::rand::{SecureRandom, SystemRandom};
use std::error::Error as _;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use tonic::Status;
use tonic::metadata::errors::InvalidMetadataValue;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

/// What went wrong talking to the admin API. No variant carries a token.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot reach the control plane at {server}")]
    Connect {
        server: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("cannot read the admin token file {}", path.display())]
    TokenFile {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no credentials: pass --token-file (droidfleet serve wrote the first admin's token to \
         <data-dir>/bootstrap-admin.token) or set DROIDFLEET_TOKEN"
    )]
    NoCredentials,
    /// The token cannot be an HTTP header value (the value itself is not kept).
    #[error("the token contains characters that cannot be sent")]
    TokenCharacters(#[source] InvalidMetadataValue),
    /// The control plane (or the transport) answered an RPC with an error status. Shown as
    /// `RPC: Code: message`; the status itself stays available to callers that branch on it.
    #[error("{rpc}: {}", status_text(.status))]
    Rpc { rpc: &'static str, status: Status },
    /// A watch stream ended before the state the caller waits for (or before any state).
    #[error("{rpc} {id:?}: the control plane ended the stream before the state awaited")]
    StreamEnded { rpc: &'static str, id: String },
    /// A page carried a next page token but no item, or the pages never ended: following them
    /// would not end.
    #[error(
        "{rpc}: the control plane's pages do not end (an empty page with a next page token, or \
         more pages than any listing has)"
    )]
    EmptyPage { rpc: &'static str },
    #[error("cannot write the JSON output")]
    Json(#[source] serde_json::Error),
}

/// `Code: message`, then the transport failure behind the status, if any.
fn status_text(status: &Status) -> String {
    let mut text = format!("{:?}: {}", status.code(), status.message());
    if let Some(cause) = status.source() {
        text.push_str(": ");
        text.push_str(&with_causes(cause));
    }
    text
}

/// An admin's bearer token. Never shown: its `Debug` output is redacted and no error carries it.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    /// A token as given; surrounding white space (such as a file's final newline) is dropped.
    pub fn new(text: &str) -> Token {
        Token(text.trim().to_string())
    }

    /// Reads a token file, such as the `bootstrap-admin.token` that `droidfleet serve` writes.
    pub fn from_file(path: &Path) -> Result<Token, AdminError> {
        std::fs::read_to_string(path)
            .map(|text| Token::new(&text))
            .map_err(|source| AdminError::TokenFile {
                path: path.to_path_buf(),
                source,
            })
    }

    /// The token given itself (`--token`, `DROIDFLEET_TOKEN`) or else the one in `file`
    /// (`--token-file`, `DROIDFLEET_TOKEN_FILE`).
    pub fn resolve(given: Option<&str>, file: Option<&Path>) -> Result<Token, AdminError> {
        match (given, file) {
            (Some(token), _) => Ok(Token::new(token)),
            (None, Some(path)) => Token::from_file(path),
            (None, None) => Err(AdminError::NoCredentials),
        }
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

/// A client of the admin API that adds the bearer token to every call. Cheap to clone and to
/// share: each call clones the channel handle, so calls through one client run concurrently
/// over its HTTP/2 connection.
#[derive(Clone)]
pub struct Client {
    admin: AdminServiceClient<Channel>,
    bearer: MetadataValue<Ascii>,
    /// The page size the list calls ask for; 0 leaves it to the control plane's default.
    page_size: i32,
}

/// The most pages one listing follows: far more than a listing of a million items at the
/// smallest default page size, so only a control plane answering tokens without end reaches it.
const MAX_PAGES: usize = 100_000;

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// The CA a client of `server` pins: for an `https://` server, the one in `ca_file`, else in
/// `tls/ca.pem` beside `token_file` (the bootstrap token sits in the control plane's data
/// directory) when that exists, else in `$DROIDFLEET_DATA_DIR/tls/ca.pem` (default
/// `droidfleet-data`); none for a plaintext `http://` server.
pub fn trusted_ca(
    server: &str,
    ca_file: Option<&Path>,
    token_file: Option<&Path>,
) -> Result<Option<CaFingerprint>, AdminError> {
    if !server.starts_with("https://") {
        return Ok(None);
    }
    let beside = |token_file: &Path| {
        token_file
            .parent()
            .unwrap_or(Path::new("."))
            .join("tls")
            .join(CA_CERT_FILE)
    };
    let path = match (ca_file, token_file) {
        (Some(path), _) => path.to_path_buf(),
        (None, Some(token_file)) if beside(token_file).exists() => beside(token_file),
        (None, _) => PathBuf::from(
            std::env::var_os("DROIDFLEET_DATA_DIR").unwrap_or_else(|| "droidfleet-data".into()),
        )
        .join("tls")
        .join(CA_CERT_FILE),
    };
    Ok(Some(CaFingerprint::of_ca_file(&path)?))
}

impl Client {
    /// Connects to the control plane at `server` (such as `https://127.0.0.1:7300`, whose
    /// certificate must chain to the CA with fingerprint `ca`; or `http://` to a loopback one
    /// serving plaintext); every call then carries `token`.
    pub async fn connect(
        server: &str,
        ca: Option<CaFingerprint>,
        token: &Token,
    ) -> Result<Client, AdminError> {
        let channel = droidfleet_proto::tls::client_endpoint(server, ca)?
            .connect()
            .await
            .map_err(|source| AdminError::Connect {
                server: server.to_string(),
                source,
            })?;
        let bearer = format!("Bearer {}", token.0)
            .parse()
            .map_err(AdminError::TokenCharacters)?;
        Ok(Client {
            admin: AdminServiceClient::new(channel),
            bearer,
            page_size: 0,
        })
    }

    /// A client over the same connection that calls as the holder of `token`.
    pub fn with_token(&self, token: &Token) -> Result<Client, AdminError> {
        Ok(Client {
            admin: self.admin.clone(),
            bearer: format!("Bearer {}", token.0)
                .parse()
                .map_err(AdminError::TokenCharacters)?,
            page_size: self.page_size,
        })
    }

    /// Lists ask for pages of `page_size` items (0: the control plane's default; it clamps a
    /// size over its maximum). Every listing still follows its pages to the end.
    pub fn with_page_size(mut self, page_size: i32) -> Client {
        self.page_size = page_size;
        self
    }

    /// Follows a list's pages from the first to the last, or until `limit` items: `page` sends
    /// the request for one page token (empty for the first) and a page size, and answers that
    /// page's items and the next page's token.
    async fn all_pages<T, Fut>(
        &self,
        rpc: &'static str,
        limit: Option<usize>,
        mut page: impl FnMut(String, i32) -> Fut,
    ) -> Result<Vec<T>, AdminError>
    where
        Fut: Future<Output = Result<(Vec<T>, String), AdminError>>,
    {
        let mut items = Vec::new();
        let mut token = String::new();
        for _ in 0..MAX_PAGES {
            let size = match limit {
                Some(limit) => {
                    let left = i32::try_from(limit - items.len()).unwrap_or(i32::MAX);
                    if self.page_size > 0 {
                        left.min(self.page_size)
                    } else {
                        left
                    }
                }
                None => self.page_size,
            };
            let (mut listed, next) = page(std::mem::take(&mut token), size).await?;
            if !next.is_empty() && listed.is_empty() {
                return Err(AdminError::EmptyPage { rpc });
            }
            items.append(&mut listed);
            if next.is_empty() || limit.is_some_and(|limit| items.len() >= limit) {
                items.truncate(limit.unwrap_or(usize::MAX));
                return Ok(items);
            }
            token = next;
        }
        Err(AdminError::EmptyPage { rpc })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.bearer.clone());
        request
    }

    /// Sends `message` with the bearer token through `send` and names `rpc` in its error.
    async fn call<Req, Resp, Fut>(
        &self,
        rpc: &'static str,
        message: Req,
        send: impl FnOnce(AdminServiceClient<Channel>, tonic::Request<Req>) -> Fut,
    ) -> Result<Resp, AdminError>
    where
        Fut: Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        send(self.admin.clone(), self.request(message))
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| AdminError::Rpc { rpc, status })
    }

    /// The devices of `group` ("" for every group) the caller may see, every page.
    pub async fn list_devices(&self, group: String) -> Result<Vec<pb::Device>, AdminError> {
        const RPC: &str = "ListDevices";
        self.all_pages(RPC, None, |page_token, page_size| {
            let request = pb::ListDevicesRequest {
                group: group.clone(),
                page_size,
                page_token,
            };
            async move {
                let page = self
                    .call(RPC, request, |mut admin, request| async move {
                        admin.list_devices(request).await
                    })
                    .await?;
                Ok((page.devices, page.next_page_token))
            }
        })
        .await
    }

    pub async fn device(&self, device_id: &str) -> Result<pb::Device, AdminError> {
        let request = pb::GetDeviceRequest {
            device_id: device_id.to_string(),
        };
        self.call("GetDevice", request, |mut admin, request| async move {
            admin.get_device(request).await
        })
        .await
    }

    /// Follows the device with WatchDevice until `reached` holds for it, and returns it then.
    pub async fn wait_device(
        &self,
        device_id: &str,
        mut reached: impl FnMut(&pb::Device) -> bool,
    ) -> Result<pb::Device, AdminError> {
        const RPC: &str = "WatchDevice";
        let request = pb::GetDeviceRequest {
            device_id: device_id.to_string(),
        };
        let mut stream = self
            .call(RPC, request, |mut admin, request| async move {
                admin.watch_device(request).await
            })
            .await?;
        while let Some(device) = stream
            .message()
            .await
            .map_err(|status| AdminError::Rpc { rpc: RPC, status })?
        {
            if reached(&device) {
                return Ok(device);
            }
        }
        Err(AdminError::StreamEnded {
            rpc: RPC,
            id: device_id.to_string(),
        })
    }

    /// Follows many devices over one WatchDevices stream: each now, then each again whenever it
    /// changes.
    pub async fn watch_devices(
        &self,
        device_ids: Vec<String>,
    ) -> Result<tonic::Streaming<pb::Device>, AdminError> {
        let request = pb::WatchDevicesRequest { device_ids };
        self.call("WatchDevices", request, |mut admin, request| async move {
            admin.watch_devices(request).await
        })
        .await
    }

    pub async fn create_enrollment_token(
        &self,
        request: pb::CreateEnrollmentTokenRequest,
    ) -> Result<pb::CreateEnrollmentTokenResponse, AdminError> {
        self.call(
            "CreateEnrollmentToken",
            request,
            |mut admin, request| async move { admin.create_enrollment_token(request).await },
        )
        .await
    }

    pub async fn re_enroll_device(
        &self,
        request: pb::ReEnrollDeviceRequest,
    ) -> Result<pb::ReEnrollDeviceResponse, AdminError> {
        self.call("ReEnrollDevice", request, |mut admin, request| async move {
            admin.re_enroll_device(request).await
        })
        .await
    }

    pub async fn move_device(
        &self,
        request: pb::MoveDeviceRequest,
    ) -> Result<pb::Device, AdminError> {
        self.call("MoveDevice", request, |mut admin, request| async move {
            admin.move_device(request).await
        })
        .await
    }

    pub async fn assign_passcode_policy(
        &self,
        request: pb::AssignPasscodePolicyRequest,
    ) -> Result<pb::Device, AdminError> {
        self.call(
            "AssignPasscodePolicy",
            request,
            |mut admin, request| async move { admin.assign_passcode_policy(request).await },
        )
        .await
    }

    pub async fn reset_passcode(
        &self,
        request: pb::ResetPasscodeRequest,
    ) -> Result<pb::Action, AdminError> {
        self.call("ResetPasscode", request, |mut admin, request| async move {
            admin.reset_passcode(with_new_trace(request)).await
        })
        .await
    }

    pub async fn remote_lock(
        &self,
        request: pb::RemoteLockRequest,
    ) -> Result<pb::Action, AdminError> {
        self.call("RemoteLock", request, |mut admin, request| async move {
            admin.remote_lock(with_new_trace(request)).await
        })
        .await
    }

    pub async fn action(&self, action_id: &str) -> Result<pb::Action, AdminError> {
        let request = action_request(action_id);
        self.call("GetAction", request, |mut admin, request| async move {
            admin.get_action(request).await
        })
        .await
    }

    /// The actions of `device_id` ("" for every device the caller may see), newest first.
    /// The actions of `device_id` ("" for every device the caller may see), newest first,
    /// every page.
    pub async fn list_actions(&self, device_id: String) -> Result<Vec<pb::Action>, AdminError> {
        const RPC: &str = "ListActions";
        self.all_pages(RPC, None, |page_token, page_size| {
            let request = pb::ListActionsRequest {
                device_id: device_id.clone(),
                page_size,
                page_token,
            };
            async move {
                let page = self
                    .call(RPC, request, |mut admin, request| async move {
                        admin.list_actions(request).await
                    })
                    .await?;
                Ok((page.actions, page.next_page_token))
            }
        })
        .await
    }

    /// Follows the action with WatchAction until its final state or, with `until_user_entered`,
    /// until the user has entered a done reset's new passcode, and returns the last state;
    /// `each` sees every state the control plane sends.
    pub async fn watch_action(
        &self,
        action_id: &str,
        until_user_entered: bool,
        mut each: impl FnMut(&pb::Action),
    ) -> Result<pb::Action, AdminError> {
        const RPC: &str = "WatchAction";
        let request = pb::GetActionRequest {
            action_id: action_id.to_string(),
            until_user_entered,
        };
        let mut stream = self
            .call(RPC, request, |mut admin, request| async move {
                admin.watch_action(request).await
            })
            .await?;
        let mut last = None;
        while let Some(action) = stream
            .message()
            .await
            .map_err(|status| AdminError::Rpc { rpc: RPC, status })?
        {
            each(&action);
            last = Some(action);
        }
        last.ok_or_else(|| AdminError::StreamEnded {
            rpc: RPC,
            id: action_id.to_string(),
        })
    }

    /// Follows the action with WatchAction (with `until_user_entered`, past a done reset's final
    /// state until the user's entry) until `reached` holds for it, and returns it then; `reached`
    /// sees every state the control plane sends. [`AdminError::StreamEnded`] when the stream
    /// ended first.
    pub async fn wait_action(
        &self,
        action_id: &str,
        until_user_entered: bool,
        mut reached: impl FnMut(&pb::Action) -> bool,
    ) -> Result<pb::Action, AdminError> {
        const RPC: &str = "WatchAction";
        let request = pb::GetActionRequest {
            action_id: action_id.to_string(),
            until_user_entered,
        };
        let mut stream = self
            .call(RPC, request, |mut admin, request| async move {
                admin.watch_action(request).await
            })
            .await?;
        while let Some(action) = stream
            .message()
            .await
            .map_err(|status| AdminError::Rpc { rpc: RPC, status })?
        {
            if reached(&action) {
                return Ok(action);
            }
        }
        Err(AdminError::StreamEnded {
            rpc: RPC,
            id: action_id.to_string(),
        })
    }

    pub async fn cancel_action(&self, action_id: &str) -> Result<pb::Action, AdminError> {
        let request = action_request(action_id);
        self.call("CancelAction", request, |mut admin, request| async move {
            admin.cancel_action(request).await
        })
        .await
    }

    /// The passcode a reset set. The answer holds a secret: show it only where asked to.
    pub async fn reveal_passcode(
        &self,
        action_id: &str,
    ) -> Result<pb::RevealPasscodeResponse, AdminError> {
        let request = action_request(action_id);
        self.call("RevealPasscode", request, |mut admin, request| async move {
            admin.reveal_passcode(request).await
        })
        .await
    }

    /// The newest `limit` events `filter` matches (its paging fields are set here), newest
    /// first, over as many pages as that takes.
    pub async fn list_audit_events(
        &self,
        filter: pb::ListAuditEventsRequest,
        limit: usize,
    ) -> Result<Vec<pb::AuditEvent>, AdminError> {
        const RPC: &str = "ListAuditEvents";
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.all_pages(RPC, Some(limit), |page_token, page_size| {
            let request = pb::ListAuditEventsRequest {
                page_size,
                page_token,
                ..filter.clone()
            };
            async move {
                let page = self
                    .call(RPC, request, |mut admin, request| async move {
                        admin.list_audit_events(request).await
                    })
                    .await?;
                Ok((page.events, page.next_page_token))
            }
        })
        .await
    }

    /// Every role, every page.
    pub async fn list_roles(&self) -> Result<Vec<pb::Role>, AdminError> {
        const RPC: &str = "ListRoles";
        self.all_pages(RPC, None, |page_token, page_size| {
            let request = pb::ListRolesRequest {
                page_size,
                page_token,
            };
            async move {
                let page = self
                    .call(RPC, request, |mut admin, request| async move {
                        admin.list_roles(request).await
                    })
                    .await?;
                Ok((page.roles, page.next_page_token))
            }
        })
        .await
    }

    pub async fn create_role(&self, role: pb::Role) -> Result<pb::Role, AdminError> {
        self.call("CreateRole", role, |mut admin, request| async move {
            admin.create_role(request).await
        })
        .await
    }

    pub async fn update_role(&self, role: pb::Role) -> Result<pb::Role, AdminError> {
        self.call("UpdateRole", role, |mut admin, request| async move {
            admin.update_role(request).await
        })
        .await
    }

    pub async fn delete_role(&self, name: String) -> Result<(), AdminError> {
        let request = pb::DeleteRoleRequest { name };
        self.call("DeleteRole", request, |mut admin, request| async move {
            admin.delete_role(request).await
        })
        .await?;
        Ok(())
    }

    /// Creates a principal; the answer holds its bearer token, shown only this once.
    pub async fn create_principal(
        &self,
        request: pb::CreatePrincipalRequest,
    ) -> Result<pb::CreatePrincipalResponse, AdminError> {
        self.call(
            "CreatePrincipal",
            request,
            |mut admin, request| async move { admin.create_principal(request).await },
        )
        .await
    }

    /// Every principal, every page.
    pub async fn list_principals(&self) -> Result<Vec<pb::Principal>, AdminError> {
        const RPC: &str = "ListPrincipals";
        self.all_pages(RPC, None, |page_token, page_size| {
            let request = pb::ListPrincipalsRequest {
                page_size,
                page_token,
            };
            async move {
                let page = self
                    .call(RPC, request, |mut admin, request| async move {
                        admin.list_principals(request).await
                    })
                    .await?;
                Ok((page.principals, page.next_page_token))
            }
        })
        .await
    }

    pub async fn assign_role(
        &self,
        request: pb::RoleAssignmentRequest,
    ) -> Result<pb::Principal, AdminError> {
        self.call("AssignRole", request, |mut admin, request| async move {
            admin.assign_role(request).await
        })
        .await
    }

    pub async fn unassign_role(
        &self,
        request: pb::RoleAssignmentRequest,
    ) -> Result<pb::Principal, AdminError> {
        self.call("UnassignRole", request, |mut admin, request| async move {
            admin.unassign_role(request).await
        })
        .await
    }

    pub async fn rotate_principal_token(
        &self,
        request: pb::RotatePrincipalTokenRequest,
    ) -> Result<pb::RotatePrincipalTokenResponse, AdminError> {
        self.call(
            "RotatePrincipalToken",
            request,
            |mut admin, request| async move { admin.rotate_principal_token(request).await },
        )
        .await
    }

    /// Revokes every token of the principal; returns how many were still valid.
    pub async fn revoke_principal_tokens(&self, name: String) -> Result<u32, AdminError> {
        let request = pb::RevokePrincipalTokensRequest { name };
        let revoked = self
            .call(
                "RevokePrincipalTokens",
                request,
                |mut admin, request| async move { admin.revoke_principal_tokens(request).await },
            )
            .await?;
        Ok(revoked.revoked)
    }

    pub async fn delete_principal(&self, name: String) -> Result<(), AdminError> {
        let request = pb::DeletePrincipalRequest { name };
        self.call(
            "DeletePrincipal",
            request,
            |mut admin, request| async move { admin.delete_principal(request).await },
        )
        .await?;
        Ok(())
    }
}

/// `request` as the start of a new W3C trace: a `traceparent` the control plane stores with the
/// action it starts and hands on to the device, whose trace id the answered action names.
fn with_new_trace<T>(mut request: tonic::Request<T>) -> tonic::Request<T> {
    let mut random = [0u8; 24];
    // A failed random source leaves zeros, which `new_root` still makes a valid (if not unique)
    // trace: tracing never fails the call.
    let _ = SystemRandom::new().fill(&mut random);
    let traceparent = TraceParent::new_root(random).to_string();
    if let Ok(value) = traceparent.parse() {
        request.metadata_mut().insert(TRACEPARENT_KEY, value);
    }
    request
}

fn action_request(action_id: &str) -> pb::GetActionRequest {
    pb::GetActionRequest {
        action_id: action_id.to_string(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_never_shows() {
        let token = Token::new("  s3cret-token\n");
        assert_eq!(token.0, "s3cret-token");
        assert!(!format!("{token:?}").contains("s3cret"));
    }

    #[test]
    fn the_token_given_wins_over_the_file_and_none_is_refused() {
        let missing = Path::new("/nonexistent/droidfleet-token");
        let given = Token::resolve(Some("given"), Some(missing)).unwrap();
        assert_eq!(given.0, "given");
        let error = Token::resolve(None, Some(missing)).unwrap_err();
        assert!(
            error
                .to_string()
                .contains("cannot read the admin token file /nonexistent/droidfleet-token"),
            "{error}"
        );
        let error = Token::resolve(None, None).unwrap_err();
        assert!(error.to_string().starts_with("no credentials"), "{error}");
    }

    #[test]
    fn an_rpc_error_names_the_rpc_the_code_and_the_message() {
        let error = AdminError::Rpc {
            rpc: "ResetPasscode",
            status: Status::not_found("device \"x\" not found"),
        };
        assert_eq!(
            error.to_string(),
            "ResetPasscode: NotFound: device \"x\" not found"
        );
    }

    #[tokio::test]
    async fn an_unreachable_control_plane_is_named() {
        // Port 1 on loopback: nothing listens there, so the connection is refused at once.
        let error = Client::connect("http://127.0.0.1:1", None, &Token::new("secret-token"))
            .await
            .unwrap_err();
        let text = with_causes(&error);
        assert!(
            text.starts_with("cannot reach the control plane at http://127.0.0.1:1"),
            "{text}"
        );
        assert!(!text.contains("secret-token") && !format!("{error:?}").contains("secret-token"));
        let error = Client::connect("not a url", None, &Token::new("t"))
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains("not a server address"),
            "{error}"
        );
    }
}
