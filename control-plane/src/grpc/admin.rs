//! `droidfleet.v1.AdminService`: every call goes through [`ControlPlane::admin_call`], which
//! authenticates, authorizes and audits it. Each handler only converts the request, calls one use
//! case of the control plane, and converts the answer.

use super::bearer_token;
use super::convert::*;
use super::watch::Watch;
use crate::model::{Action, AuditFilter, RoleAssignment};
use crate::secret::Passcode;
use crate::service::{
    AuditNote, ControlPlane, DeviceSearch, EnrollmentTokenRequest, LockRequest, Operation,
    PageRequest, ResetRequest, Rotation, ServiceError, scope_words,
};
use crate::store::AuthenticatedPrincipal;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_server::AdminService;
use droidfleet_telemetry::traceparent::{TRACEPARENT_KEY, TraceParent, TraceParentError};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub struct AdminApi {
    control_plane: Arc<ControlPlane>,
}

impl AdminApi {
    pub fn new(control_plane: Arc<ControlPlane>) -> AdminApi {
        AdminApi { control_plane }
    }

    async fn call<Req, T, F, Fut>(
        &self,
        request: Request<Req>,
        operation: Operation,
        device_id: impl Fn(&Req) -> Option<String>,
        body: F,
    ) -> Result<Response<T>, Status>
    where
        F: FnOnce(Arc<ControlPlane>, AuthenticatedPrincipal, Req) -> Fut,
        Fut: std::future::Future<Output = Result<(T, AuditNote), ServiceError>>,
    {
        let bearer = bearer_token(request.metadata());
        let message = request.into_inner();
        let device_id = device_id(&message).filter(|id| !id.is_empty());
        let control_plane = self.control_plane.clone();
        let result = self
            .control_plane
            .admin_call(
                bearer.as_ref(),
                operation,
                device_id.as_deref(),
                |principal| body(control_plane, principal, message),
            )
            .await?;
        Ok(Response::new(result))
    }
}

fn none<R>(_: &R) -> Option<String> {
    None
}

fn device_note(device_id: &str) -> AuditNote {
    AuditNote {
        device_id: Some(device_id.to_string()),
        ..AuditNote::default()
    }
}

fn action_note(action: &Action, detail: String) -> AuditNote {
    AuditNote {
        device_id: Some(action.device_id.clone()),
        action_id: Some(action.id.clone()),
        detail,
    }
}

/// The caller's W3C trace context (`traceparent` metadata). A missing or malformed one starts a
/// new trace, as W3C Trace Context asks of a receiver: tracing never fails a request, and a
/// malformed value is logged with what is wrong with it.
fn traceparent(metadata: &tonic::metadata::MetadataMap) -> Option<TraceParent> {
    let value = metadata.get(TRACEPARENT_KEY)?;
    let parsed = match value.to_str() {
        Ok(text) => TraceParent::parse(text),
        Err(_) => Err(TraceParentError::Format),
    };
    parsed
        .inspect_err(
            |error| tracing::warn!(%error, "ignored a malformed traceparent; starting a new trace"),
        )
        .ok()
}

/// An optional text field: empty means unset.
fn text(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// A list request's paging fields.
fn page(page_size: i32, page_token: String) -> PageRequest {
    PageRequest {
        page_size,
        page_token,
    }
}

/// A time-to-live in seconds; 0 means the default.
fn ttl(seconds: u64) -> Option<u64> {
    (seconds > 0).then(|| seconds.saturating_mul(1000))
}

fn assignment(role: String, group: String) -> RoleAssignment {
    RoleAssignment {
        role,
        group: text(group),
    }
}

fn check_not_built_in(role: &pb::Role) -> Result<(), ServiceError> {
    if role.built_in {
        return Err(ServiceError::InvalidArgument {
            field: "built_in",
            problem: "only the control plane defines built-in roles".into(),
        });
    }
    Ok(())
}

type DeviceStream = Pin<Box<dyn Stream<Item = Result<pb::Device, Status>> + Send>>;
type ActionStream = Pin<Box<dyn Stream<Item = Result<pb::Action, Status>> + Send>>;

#[tonic::async_trait]
impl AdminService for AdminApi {
    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        self.call(
            request,
            Operation::ListDevices,
            none,
            |cp, caller, r| async move {
                let group = text(r.group);
                let page = page(r.page_size, r.page_token);
                let listing = cp.devices(&caller, group.as_deref(), &page).await?;
                let devices = listing
                    .items
                    .iter()
                    .map(|d| device_to_pb(d, cp.is_online(&d.id)))
                    .collect();
                let next_page_token = listing.next_page_token.unwrap_or_default();
                let listed = pb::ListDevicesResponse {
                    devices,
                    next_page_token,
                };
                Ok((listed, AuditNote::default()))
            },
        )
        .await
    }

    async fn search_devices(
        &self,
        request: Request<pb::SearchDevicesRequest>,
    ) -> Result<Response<pb::SearchDevicesResponse>, Status> {
        self.call(
            request,
            Operation::SearchDevices,
            none,
            |cp, caller, r| async move {
                let search = DeviceSearch {
                    page: page(r.page_size, r.page_token),
                    search: text(r.search),
                    ownership: optional_ownership_from_pb(r.ownership, "ownership")?,
                    group: text(r.group),
                    latest_action_state: optional_action_state_from_pb(
                        r.latest_action_state,
                        "latest_action_state",
                    )?,
                };
                let page = cp.search_devices(&caller, search).await?;
                let devices = page
                    .devices
                    .iter()
                    .map(|listed| pb::ListedDevice {
                        device: Some(device_to_pb(
                            &listed.device,
                            cp.is_online(&listed.device.id),
                        )),
                        latest_action: listed.latest_action.as_ref().map(action_to_pb),
                    })
                    .collect();
                Ok((
                    pb::SearchDevicesResponse {
                        devices,
                        next_page_token: page.next_page_token.unwrap_or_default(),
                        previous_page_token: page.previous_page_token.unwrap_or_default(),
                    },
                    AuditNote::default(),
                ))
            },
        )
        .await
    }

    async fn get_device(
        &self,
        request: Request<pb::GetDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        self.call(
            request,
            Operation::GetDevice,
            |r| Some(r.device_id.clone()),
            |cp, caller, r| async move {
                let device = cp.device(&caller, &r.device_id).await?;
                Ok((
                    device_to_pb(&device, cp.is_online(&device.id)),
                    AuditNote::default(),
                ))
            },
        )
        .await
    }

    type WatchDeviceStream = DeviceStream;

    async fn watch_device(
        &self,
        request: Request<pb::GetDeviceRequest>,
    ) -> Result<Response<Self::WatchDeviceStream>, Status> {
        self.call(
            request,
            Operation::WatchDevice,
            |r| Some(r.device_id.clone()),
            |cp, caller, r| async move {
                // Follow before the first read, so no change in between is missed.
                let mut watch = Watch::open(&cp, caller, Operation::WatchDevice)?;
                let changes = cp.follow_devices(vec![r.device_id.clone()]);
                let first = cp.device(watch.caller(), &r.device_id).await?;
                let id = first.id.clone();
                let first = device_to_pb(&first, cp.is_online(&id));
                let stream = async_stream(move |tx| async move {
                    let mut last = first;
                    if tx.send(Ok(last.clone())).await.is_err() {
                        return;
                    }
                    while watch.until(&tx, changes.next()).await.is_some() {
                        let next = match cp.device(watch.caller(), &id).await {
                            Ok(device) => device_to_pb(&device, cp.is_online(&id)),
                            Err(e) => {
                                let _ = tx.send(Err(e.into())).await;
                                return;
                            }
                        };
                        if next != last {
                            last = next;
                            if tx.send(Ok(last.clone())).await.is_err() {
                                return;
                            }
                        }
                    }
                });
                Ok((stream, device_note(&r.device_id)))
            },
        )
        .await
    }

    type WatchDevicesStream = DeviceStream;

    async fn watch_devices(
        &self,
        request: Request<pb::WatchDevicesRequest>,
    ) -> Result<Response<Self::WatchDevicesStream>, Status> {
        self.call(
            request,
            Operation::WatchDevices,
            none,
            |cp, caller, r| async move {
                // Follow before the first reads, so no change in between is missed.
                let mut watch = Watch::open(&cp, caller, Operation::WatchDevices)?;
                let changes = cp.follow_devices(r.device_ids.clone());
                let first = cp.watched_devices(watch.caller(), &r.device_ids)?;
                let detail = format!("{} device(s)", first.len());
                let stream = async_stream(move |tx| async move {
                    for device in first {
                        let online = cp.is_online(&device.id);
                        if tx.send(Ok(device_to_pb(&device, online))).await.is_err() {
                            return;
                        }
                    }
                    while let Some(mut changed) = watch.until(&tx, changes.next()).await {
                        changed.sort_unstable();
                        changed.dedup();
                        for id in changed {
                            let next = match cp.device(watch.caller(), &id).await {
                                Ok(device) => device_to_pb(&device, cp.is_online(&id)),
                                Err(e) => {
                                    let _ = tx.send(Err(e.into())).await;
                                    return;
                                }
                            };
                            if tx.send(Ok(next)).await.is_err() {
                                return;
                            }
                        }
                    }
                });
                Ok((stream, AuditNote::detail(detail)))
            },
        )
        .await
    }

    async fn create_enrollment_token(
        &self,
        request: Request<pb::CreateEnrollmentTokenRequest>,
    ) -> Result<Response<pb::CreateEnrollmentTokenResponse>, Status> {
        self.call(
            request,
            Operation::CreateEnrollmentToken,
            none,
            |cp, caller, r| async move {
                let request = EnrollmentTokenRequest {
                    max_uses: r.max_uses,
                    ttl: ttl(r.ttl_seconds),
                    group: text(r.group),
                };
                let (token, expires_at, max_uses, group) =
                    cp.create_enrollment_token(&caller, request).await?;
                let detail = format!("max_uses={max_uses} group={group}");
                Ok((
                    pb::CreateEnrollmentTokenResponse {
                        enrollment_token: token.expose().to_string(),
                        expires_at_ms: expires_at,
                        max_uses,
                        group,
                    },
                    AuditNote::detail(detail),
                ))
            },
        )
        .await
    }

    async fn re_enroll_device(
        &self,
        request: Request<pb::ReEnrollDeviceRequest>,
    ) -> Result<Response<pb::ReEnrollDeviceResponse>, Status> {
        self.call(
            request,
            Operation::ReEnrollDevice,
            |r| Some(r.device_id.clone()),
            |cp, caller, r| async move {
                let (token, expires_at) = cp
                    .reenroll_device(&caller, &r.device_id, ttl(r.ttl_seconds))
                    .await?;
                let mut note = device_note(&r.device_id);
                note.detail = "device credential revoked; re-enrollment token issued".into();
                Ok((
                    pb::ReEnrollDeviceResponse {
                        device_id: r.device_id,
                        enrollment_token: token.expose().to_string(),
                        expires_at_ms: expires_at,
                    },
                    note,
                ))
            },
        )
        .await
    }

    async fn move_device(
        &self,
        request: Request<pb::MoveDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        self.call(
            request,
            Operation::MoveDevice,
            |r| Some(r.device_id.clone()),
            |cp, caller, r| async move {
                let (device, from) = cp.move_device(&caller, &r.device_id, &r.group).await?;
                let mut note = device_note(&device.id);
                note.detail = format!("moved from group {from} to group {}", device.group);
                Ok((device_to_pb(&device, cp.is_online(&device.id)), note))
            },
        )
        .await
    }

    async fn assign_passcode_policy(
        &self,
        request: Request<pb::AssignPasscodePolicyRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        self.call(
            request,
            Operation::AssignPasscodePolicy,
            |r| Some(r.device_id.clone()),
            |cp, caller, r| async move {
                let scope = scope_from_pb(r.scope, "scope")?;
                let policy = r.policy.as_ref().map(policy_from_pb).transpose()?;
                let detail = match &policy {
                    Some(p) => format!(
                        "{} policy: {:?}, min length {}",
                        scope, p.passcode_type, p.min_length
                    ),
                    None => format!("{scope} policy removed"),
                };
                let device = cp
                    .assign_policy(&caller, &r.device_id, scope, policy)
                    .await?;
                let mut note = device_note(&device.id);
                note.detail = detail;
                Ok((device_to_pb(&device, cp.is_online(&device.id)), note))
            },
        )
        .await
    }

    async fn reset_passcode(
        &self,
        request: Request<pb::ResetPasscodeRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        let traceparent = traceparent(request.metadata());
        self.call(
            request,
            Operation::ResetPasscode,
            |r| Some(r.device_id.clone()),
            |cp, caller, r| async move {
                let request = ResetRequest {
                    device_id: r.device_id,
                    scope: optional_scope_from_pb(r.scope, "scope")?,
                    new_passcode: (!r.new_passcode.is_empty())
                        .then(|| Passcode::new(r.new_passcode)),
                    ttl: ttl(r.ttl_seconds),
                    traceparent,
                };
                let chosen = request.new_passcode.is_some();
                let action = cp.reset_passcode(&caller, request).await?;
                let detail = format!(
                    "{} reset, passcode {}, action {}",
                    scope_words(action.scope),
                    if chosen {
                        "chosen by the admin"
                    } else {
                        "generated"
                    },
                    action.state
                );
                Ok((action_to_pb(&action), action_note(&action, detail)))
            },
        )
        .await
    }

    async fn remote_lock(
        &self,
        request: Request<pb::RemoteLockRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        let traceparent = traceparent(request.metadata());
        self.call(
            request,
            Operation::RemoteLock,
            |r| Some(r.device_id.clone()),
            |cp, caller, r| async move {
                let request = LockRequest {
                    device_id: r.device_id,
                    scope: optional_scope_from_pb(r.scope, "scope")?,
                    ttl: ttl(r.ttl_seconds),
                    traceparent,
                };
                let action = cp.remote_lock(&caller, request).await?;
                let detail = format!(
                    "{} lock, action {}",
                    scope_words(action.scope),
                    action.state
                );
                Ok((action_to_pb(&action), action_note(&action, detail)))
            },
        )
        .await
    }

    async fn get_action(
        &self,
        request: Request<pb::GetActionRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        self.call(
            request,
            Operation::GetAction,
            none,
            |cp, caller, r| async move {
                let action = cp.action(&caller, &r.action_id).await?;
                Ok((action_to_pb(&action), action_note(&action, String::new())))
            },
        )
        .await
    }

    async fn list_actions(
        &self,
        request: Request<pb::ListActionsRequest>,
    ) -> Result<Response<pb::ListActionsResponse>, Status> {
        self.call(
            request,
            Operation::ListActions,
            |r| Some(r.device_id.clone()),
            |cp, caller, r| async move {
                let device = text(r.device_id);
                let page = page(r.page_size, r.page_token);
                let listing = cp.actions(&caller, device.as_deref(), &page).await?;
                let listed = pb::ListActionsResponse {
                    actions: listing.items.iter().map(action_to_pb).collect(),
                    next_page_token: listing.next_page_token.unwrap_or_default(),
                };
                Ok((listed, AuditNote::default()))
            },
        )
        .await
    }

    type WatchActionStream = ActionStream;

    async fn watch_action(
        &self,
        request: Request<pb::GetActionRequest>,
    ) -> Result<Response<Self::WatchActionStream>, Status> {
        self.call(
            request,
            Operation::WatchAction,
            none,
            |cp, caller, r| async move {
                // Follow before reading, so no change between the read and the following is
                // missed.
                let mut watch = Watch::open(&cp, caller, Operation::WatchAction)?;
                let changes = cp.follow_actions(vec![r.action_id.clone()]);
                let first = cp.action(watch.caller(), &r.action_id).await?;
                let note = action_note(&first, String::new());
                let stream = async_stream(move |tx| async move {
                    let mut last = first.clone();
                    if tx.send(Ok(action_to_pb(&last))).await.is_err() {
                        return;
                    }
                    let follow_entry = r.until_user_entered;
                    let awaits_entry = |action: &crate::model::Action| {
                        follow_entry
                            && action.kind == crate::model::ActionKind::ResetPasscode
                            && action.state == crate::model::ActionState::Done
                            && action.user_entered_at.is_none()
                    };
                    while !last.state.is_final() || awaits_entry(&last) {
                        let Some(changed) = watch.until(&tx, changes.next()).await else {
                            return;
                        };
                        for next in changed {
                            // A change committed before the first read can still arrive after
                            // it: never go back to it.
                            if progress(&next) > progress(&last) {
                                last = next;
                                if tx.send(Ok(action_to_pb(&last))).await.is_err() {
                                    return;
                                }
                            }
                        }
                    }
                });
                Ok((stream, note))
            },
        )
        .await
    }

    async fn cancel_action(
        &self,
        request: Request<pb::GetActionRequest>,
    ) -> Result<Response<pb::Action>, Status> {
        self.call(
            request,
            Operation::CancelAction,
            none,
            |cp, caller, r| async move {
                let action = cp.cancel_action(&caller, &r.action_id).await?;
                Ok((
                    action_to_pb(&action),
                    action_note(&action, "canceled".into()),
                ))
            },
        )
        .await
    }

    async fn reveal_passcode(
        &self,
        request: Request<pb::GetActionRequest>,
    ) -> Result<Response<pb::RevealPasscodeResponse>, Status> {
        self.call(
            request,
            Operation::RevealPasscode,
            none,
            |cp, caller, r| async move {
                let (passcode, action) = cp.reveal_passcode(&caller, &r.action_id).await?;
                Ok((
                    pb::RevealPasscodeResponse {
                        action_id: action.id.clone(),
                        passcode: passcode.expose().to_string(),
                        visible_until_ms: action.passcode_visible_until.unwrap_or(0),
                    },
                    action_note(&action, "passcode revealed".into()),
                ))
            },
        )
        .await
    }

    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        self.call(
            request,
            Operation::ListAuditEvents,
            none,
            |cp, _, r| async move {
                let filter = AuditFilter {
                    device_id: text(r.device_id),
                    principal: text(r.principal),
                    operation: text(r.operation),
                    since: (r.since_ms > 0).then_some(r.since_ms),
                    until: (r.until_ms > 0).then_some(r.until_ms),
                };
                let page = page(r.page_size, r.page_token);
                let listing = cp.audit_events(&filter, r.limit, &page).await?;
                let listed = pb::ListAuditEventsResponse {
                    events: listing.items.iter().map(audit_to_pb).collect(),
                    next_page_token: listing.next_page_token.unwrap_or_default(),
                };
                Ok((listed, AuditNote::default()))
            },
        )
        .await
    }

    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Result<Response<pb::ListRolesResponse>, Status> {
        self.call(request, Operation::ListRoles, none, |cp, _, r| async move {
            let listing = cp.roles(&page(r.page_size, r.page_token)).await?;
            let listed = pb::ListRolesResponse {
                roles: listing.items.iter().map(role_to_pb).collect(),
                next_page_token: listing.next_page_token.unwrap_or_default(),
            };
            Ok((listed, AuditNote::default()))
        })
        .await
    }

    async fn create_role(&self, request: Request<pb::Role>) -> Result<Response<pb::Role>, Status> {
        self.call(
            request,
            Operation::CreateRole,
            none,
            |cp, _, r| async move {
                check_not_built_in(&r)?;
                let role = cp.create_role(&r.name, &r.permissions).await?;
                Ok((
                    role_to_pb(&role),
                    AuditNote::detail(format!("role {:?}", role.name)),
                ))
            },
        )
        .await
    }

    async fn update_role(&self, request: Request<pb::Role>) -> Result<Response<pb::Role>, Status> {
        self.call(
            request,
            Operation::UpdateRole,
            none,
            |cp, _, r| async move {
                check_not_built_in(&r)?;
                let role = cp.update_role(&r.name, &r.permissions).await?;
                let permissions: Vec<&str> = role.permissions.iter().map(|p| p.as_str()).collect();
                Ok((
                    role_to_pb(&role),
                    AuditNote::detail(format!(
                        "role {:?} now grants {}",
                        role.name,
                        permissions.join(", ")
                    )),
                ))
            },
        )
        .await
    }

    async fn delete_role(
        &self,
        request: Request<pb::DeleteRoleRequest>,
    ) -> Result<Response<pb::DeleteRoleResponse>, Status> {
        self.call(
            request,
            Operation::DeleteRole,
            none,
            |cp, _, r| async move {
                cp.delete_role(&r.name).await?;
                Ok((
                    pb::DeleteRoleResponse {},
                    AuditNote::detail(format!("role {:?}", r.name)),
                ))
            },
        )
        .await
    }

    async fn create_principal(
        &self,
        request: Request<pb::CreatePrincipalRequest>,
    ) -> Result<Response<pb::CreatePrincipalResponse>, Status> {
        self.call(
            request,
            Operation::CreatePrincipal,
            none,
            |cp, _, r| async move {
                let assignments: Vec<RoleAssignment> = r
                    .assignments
                    .into_iter()
                    .map(|a| assignment(a.role, a.group))
                    .collect();
                let (principal, token) = cp
                    .create_principal(
                        &r.name,
                        &r.roles,
                        &assignments,
                        token_ttl_from_pb(r.token_ttl_seconds),
                    )
                    .await?;
                let held: Vec<String> = principal
                    .assignments
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                Ok((
                    pb::CreatePrincipalResponse {
                        name: principal.name.clone(),
                        bearer_token: token.expose().to_string(),
                        token_expires_at_ms: principal.token.map_or(0, |t| t.expires_at),
                    },
                    AuditNote::detail(format!(
                        "principal {:?} with roles {}",
                        principal.name,
                        held.join(", ")
                    )),
                ))
            },
        )
        .await
    }

    async fn list_principals(
        &self,
        request: Request<pb::ListPrincipalsRequest>,
    ) -> Result<Response<pb::ListPrincipalsResponse>, Status> {
        self.call(
            request,
            Operation::ListPrincipals,
            none,
            |cp, _, r| async move {
                let listing = cp.principals(&page(r.page_size, r.page_token)).await?;
                let listed = pb::ListPrincipalsResponse {
                    principals: listing.items.iter().map(principal_to_pb).collect(),
                    next_page_token: listing.next_page_token.unwrap_or_default(),
                };
                Ok((listed, AuditNote::default()))
            },
        )
        .await
    }

    async fn assign_role(
        &self,
        request: Request<pb::RoleAssignmentRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        self.call(
            request,
            Operation::AssignRole,
            none,
            |cp, _, r| async move {
                let wanted = assignment(r.role, r.group);
                let principal = cp.assign_role(&r.principal, &wanted).await?;
                Ok((
                    principal_to_pb(&principal),
                    AuditNote::detail(format!("principal {:?} holds {wanted}", principal.name)),
                ))
            },
        )
        .await
    }

    async fn unassign_role(
        &self,
        request: Request<pb::RoleAssignmentRequest>,
    ) -> Result<Response<pb::Principal>, Status> {
        self.call(
            request,
            Operation::UnassignRole,
            none,
            |cp, _, r| async move {
                let unwanted = assignment(r.role, r.group);
                let principal = cp.unassign_role(&r.principal, &unwanted).await?;
                Ok((
                    principal_to_pb(&principal),
                    AuditNote::detail(format!(
                        "principal {:?} no longer holds {unwanted}",
                        principal.name
                    )),
                ))
            },
        )
        .await
    }

    async fn delete_principal(
        &self,
        request: Request<pb::DeletePrincipalRequest>,
    ) -> Result<Response<pb::DeletePrincipalResponse>, Status> {
        self.call(
            request,
            Operation::DeletePrincipal,
            none,
            |cp, caller, r| async move {
                cp.delete_principal(&caller, &r.name).await?;
                Ok((
                    pb::DeletePrincipalResponse {},
                    AuditNote::detail(format!("principal {:?}", r.name)),
                ))
            },
        )
        .await
    }

    async fn rotate_principal_token(
        &self,
        request: Request<pb::RotatePrincipalTokenRequest>,
    ) -> Result<Response<pb::RotatePrincipalTokenResponse>, Status> {
        self.call(
            request,
            Operation::RotatePrincipalToken,
            none,
            |cp, caller, r| async move {
                let rotation = Rotation {
                    ttl: token_ttl_from_pb(r.token_ttl_seconds),
                    grace: r.grace_seconds.saturating_mul(crate::clock::SECOND),
                };
                let (principal, token) = cp.rotate_admin_token(&caller, &r.name, rotation).await?;
                let issued = principal.token.map_or(0, |t| t.issued_at);
                let previous_end = issued.saturating_add(rotation.grace);
                Ok((
                    pb::RotatePrincipalTokenResponse {
                        principal: Some(principal_to_pb(&principal)),
                        bearer_token: token.expose().to_string(),
                        token_expires_at_ms: principal.token.map_or(0, |t| t.expires_at),
                        previous_tokens_end_at_ms: previous_end,
                    },
                    AuditNote::detail(format!(
                        "principal {:?}: new token, old tokens end after {} s",
                        principal.name, r.grace_seconds
                    )),
                ))
            },
        )
        .await
    }

    async fn revoke_principal_tokens(
        &self,
        request: Request<pb::RevokePrincipalTokensRequest>,
    ) -> Result<Response<pb::RevokePrincipalTokensResponse>, Status> {
        self.call(
            request,
            Operation::RevokePrincipalTokens,
            none,
            |cp, caller, r| async move {
                let revoked = cp.revoke_admin_tokens(&caller, &r.name).await?;
                Ok((
                    pb::RevokePrincipalTokensResponse {
                        revoked: u32::try_from(revoked).unwrap_or(u32::MAX),
                    },
                    AuditNote::detail(format!("principal {:?}: {revoked} token(s)", r.name)),
                ))
            },
        )
        .await
    }

    async fn get_caller(
        &self,
        request: Request<pb::GetCallerRequest>,
    ) -> Result<Response<pb::Caller>, Status> {
        self.call(
            request,
            Operation::GetCaller,
            |r| Some(r.device_id.clone()),
            |cp, caller, r| async move {
                let device = text(r.device_id);
                let access = cp.caller_access(&caller, device.as_deref()).await?;
                let note = match &device {
                    Some(device_id) => device_note(device_id),
                    None => AuditNote::default(),
                };
                Ok((
                    pb::Caller {
                        name: caller.name.clone(),
                        assignments: access
                            .assignments
                            .iter()
                            .map(|a| pb::RoleAssignment {
                                role: a.role.clone(),
                                group: a.group.clone().unwrap_or_default(),
                            })
                            .collect(),
                        permissions: permission_names(&access.anywhere),
                        device_permissions: access
                            .on_device
                            .as_ref()
                            .map(permission_names)
                            .unwrap_or_default(),
                    },
                    note,
                ))
            },
        )
        .await
    }
}

/// A permission set as the wire spells it, in a stable order.
fn permission_names(
    permissions: &std::collections::BTreeSet<crate::model::Permission>,
) -> Vec<String> {
    permissions.iter().map(|p| p.as_str().to_string()).collect()
}

/// How far an action has come: a later state, or a later change of the same state. An action
/// only ever moves forward, so this orders its versions.
fn progress(action: &Action) -> (u8, bool, u64) {
    let state = match action.state {
        crate::model::ActionState::Pending => 0,
        crate::model::ActionState::Active => 1,
        _ => 2,
    };
    (state, action.user_entered_at.is_some(), action.updated_at)
}

/// A stream fed by a task, so a handler can keep state across items without a hand-written
/// `Stream` implementation.
fn async_stream<T, F, Fut>(producer: F) -> Pin<Box<dyn Stream<Item = T> + Send>>
where
    T: Send + 'static,
    F: FnOnce(tokio::sync::mpsc::Sender<T>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(producer(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
