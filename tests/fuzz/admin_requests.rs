//! Admin requests as the control plane's admin API receives them: the input's first byte picks
//! the RPC and the rest is its request message, which the real `AdminApi` (a control plane on a
//! SQLite database in a temporary folder, called as the bootstrap admin) converts, validates and
//! runs. Every answer must be a status that names the problem: never a panic, never INTERNAL or
//! UNKNOWN. The id `@dev` stands for the enrolled device and `@act` for its reset, so that the
//! corpus means the same in every run.

use crate::driver::fuzz;
use droidfleet_control_plane::clock::SystemClock;
use droidfleet_control_plane::grpc::{AdminApi, Gateway};
use droidfleet_control_plane::server::open;
use droidfleet_control_plane::service::Config;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_server::AdminService;
use droidfleet_proto::v1::device_gateway_server::DeviceGateway;
use prost::Message;
use std::sync::Arc;
use tonic::{Code, Request, Status};

/// The RPCs the target calls, by the input's first byte (modulo their number).
const RPCS: [&str; 24] = [
    "ListDevices",
    "SearchDevices",
    "GetDevice",
    "MoveDevice",
    "CreateEnrollmentToken",
    "ReEnrollDevice",
    "AssignPasscodePolicy",
    "ResetPasscode",
    "RemoteLock",
    "GetAction",
    "ListActions",
    "CancelAction",
    "RevealPasscode",
    "ListAuditEvents",
    "ListRoles",
    "CreateRole",
    "UpdateRole",
    "DeleteRole",
    "CreatePrincipal",
    "ListPrincipals",
    "AssignRole",
    "UnassignRole",
    "DeletePrincipal",
    "GetCaller",
];

struct Fixture {
    api: AdminApi,
    token: String,
    device_id: String,
    action_id: String,
}

impl Fixture {
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token)
                .parse()
                .expect("ASCII metadata"),
        );
        request
    }

    /// Replaces the placeholders of the corpus with the live ids.
    fn ids(&self, id: &mut String) {
        match id.as_str() {
            "@dev" => *id = self.device_id.clone(),
            "@act" => *id = self.action_id.clone(),
            _ => {}
        }
    }
}

async fn fixture(dir: &std::path::Path) -> Fixture {
    let opened = open(Config::new(dir), Arc::new(SystemClock))
        .await
        .expect("the control plane opens");
    let token_path = opened.bootstrap_token_path.expect("a first start");
    let token = std::fs::read_to_string(token_path)
        .expect("the bootstrap token reads")
        .trim()
        .to_string();
    let api = AdminApi::new(opened.control_plane.clone());
    let gateway = Gateway::new(opened.control_plane);
    let mut fixture = Fixture {
        api,
        token,
        device_id: String::new(),
        action_id: String::new(),
    };
    let enrollment = fixture
        .api
        .create_enrollment_token(fixture.request(pb::CreateEnrollmentTokenRequest {
            max_uses: 1,
            ttl_seconds: 600,
            group: String::new(),
        }))
        .await
        .expect("an enrollment token")
        .into_inner();
    fixture.device_id = gateway
        .enroll(Request::new(pb::EnrollRequest {
            enrollment_token: enrollment.enrollment_token,
            ownership: pb::Ownership::Cope as i32,
            display_name: "fuzzed".into(),
            // Any 32 bytes: the fuzzed device never opens a session.
            device_public_key: vec![9; 32],
        }))
        .await
        .expect("the device enrolls")
        .into_inner()
        .device_id;
    let policy = pb::PasscodePolicy {
        r#type: pb::PasscodeType::Pin as i32,
        min_length: 4,
        ..pb::PasscodePolicy::default()
    };
    fixture
        .api
        .assign_passcode_policy(fixture.request(pb::AssignPasscodePolicyRequest {
            device_id: fixture.device_id.clone(),
            scope: pb::CredentialScope::Device as i32,
            policy: Some(policy),
        }))
        .await
        .expect("a policy");
    // A reset needs the device's escrowed token, which only a connected device gives: without
    // one it is refused, so the action the corpus names is a remote lock.
    fixture.action_id = fixture
        .api
        .remote_lock(fixture.request(pb::RemoteLockRequest {
            device_id: fixture.device_id.clone(),
            scope: pb::CredentialScope::Device as i32,
            ttl_seconds: 600,
        }))
        .await
        .expect("a remote lock is queued")
        .into_inner()
        .action_id;
    fixture
}

fn seeds() -> Vec<Vec<u8>> {
    let rpc = |name: &str| RPCS.iter().position(|r| *r == name).unwrap() as u8;
    let seed = |name: &str, message: &dyn Fn() -> Vec<u8>| {
        let mut input = vec![rpc(name)];
        input.extend(message());
        input
    };
    let dev = || "@dev".to_string();
    let act = || "@act".to_string();
    vec![
        seed("ListDevices", &|| {
            pb::ListDevicesRequest::default().encode_to_vec()
        }),
        seed("SearchDevices", &|| {
            pb::SearchDevicesRequest {
                page_size: 10,
                search: "fuzz".into(),
                ..Default::default()
            }
            .encode_to_vec()
        }),
        seed("GetDevice", &|| {
            pb::GetDeviceRequest { device_id: dev() }.encode_to_vec()
        }),
        seed("MoveDevice", &|| {
            pb::MoveDeviceRequest {
                device_id: dev(),
                group: "lab".into(),
            }
            .encode_to_vec()
        }),
        seed("CreateEnrollmentToken", &|| {
            pb::CreateEnrollmentTokenRequest {
                max_uses: 3,
                ttl_seconds: 60,
                group: "lab".into(),
            }
            .encode_to_vec()
        }),
        seed("AssignPasscodePolicy", &|| {
            pb::AssignPasscodePolicyRequest {
                device_id: dev(),
                scope: pb::CredentialScope::WorkProfile as i32,
                policy: Some(pb::PasscodePolicy {
                    r#type: pb::PasscodeType::Complex as i32,
                    min_length: 8,
                    min_symbols: 1,
                    max_failed_attempts_before_wipe: 10,
                    ..Default::default()
                }),
            }
            .encode_to_vec()
        }),
        seed("ResetPasscode", &|| {
            pb::ResetPasscodeRequest {
                device_id: dev(),
                scope: pb::CredentialScope::Device as i32,
                new_passcode: "2468".into(),
                ttl_seconds: 60,
            }
            .encode_to_vec()
        }),
        seed("RemoteLock", &|| {
            pb::RemoteLockRequest {
                device_id: dev(),
                scope: pb::CredentialScope::WorkProfile as i32,
                ttl_seconds: 60,
            }
            .encode_to_vec()
        }),
        seed("GetAction", &|| {
            pb::GetActionRequest {
                action_id: act(),
                until_user_entered: false,
            }
            .encode_to_vec()
        }),
        seed("ListActions", &|| {
            pb::ListActionsRequest {
                device_id: dev(),
                ..Default::default()
            }
            .encode_to_vec()
        }),
        seed("CancelAction", &|| {
            pb::GetActionRequest {
                action_id: act(),
                until_user_entered: false,
            }
            .encode_to_vec()
        }),
        seed("ListAuditEvents", &|| {
            pb::ListAuditEventsRequest {
                device_id: dev(),
                limit: 5,
                ..Default::default()
            }
            .encode_to_vec()
        }),
        seed("CreateRole", &|| {
            pb::Role {
                name: "helpdesk".into(),
                permissions: vec!["Devices.Read".into()],
                built_in: false,
            }
            .encode_to_vec()
        }),
        seed("CreatePrincipal", &|| {
            pb::CreatePrincipalRequest {
                name: "ops".into(),
                roles: vec![],
                assignments: vec![pb::RoleAssignment {
                    role: "Viewer".into(),
                    group: "lab".into(),
                }],
                token_ttl_seconds: 0,
            }
            .encode_to_vec()
        }),
        seed("AssignRole", &|| {
            pb::RoleAssignmentRequest {
                principal: "ops".into(),
                role: "helpdesk".into(),
                group: String::new(),
            }
            .encode_to_vec()
        }),
        seed("GetCaller", &|| {
            pb::GetCallerRequest { device_id: dev() }.encode_to_vec()
        }),
    ]
}

/// Calls the RPC the input names; `None` when the rest does not decode as its request.
async fn call(f: &Fixture, rpc: &str, body: &[u8]) -> Option<Result<(), Status>> {
    macro_rules! unary {
        ($method:ident, $request:ty $(, $id:ident)*) => {{
            #[allow(unused_mut)]
            let mut request = <$request>::decode(body).ok()?;
            $(f.ids(&mut request.$id);)*
            f.api.$method(f.request(request)).await.map(|_| ())
        }};
    }
    Some(match rpc {
        "ListDevices" => unary!(list_devices, pb::ListDevicesRequest),
        "SearchDevices" => unary!(search_devices, pb::SearchDevicesRequest),
        "GetDevice" => unary!(get_device, pb::GetDeviceRequest, device_id),
        "MoveDevice" => unary!(move_device, pb::MoveDeviceRequest, device_id),
        "CreateEnrollmentToken" => {
            unary!(create_enrollment_token, pb::CreateEnrollmentTokenRequest)
        }
        "ReEnrollDevice" => unary!(re_enroll_device, pb::ReEnrollDeviceRequest, device_id),
        "AssignPasscodePolicy" => {
            unary!(
                assign_passcode_policy,
                pb::AssignPasscodePolicyRequest,
                device_id
            )
        }
        "ResetPasscode" => unary!(reset_passcode, pb::ResetPasscodeRequest, device_id),
        "RemoteLock" => unary!(remote_lock, pb::RemoteLockRequest, device_id),
        "GetAction" => unary!(get_action, pb::GetActionRequest, action_id),
        "ListActions" => unary!(list_actions, pb::ListActionsRequest, device_id),
        "CancelAction" => unary!(cancel_action, pb::GetActionRequest, action_id),
        "RevealPasscode" => unary!(reveal_passcode, pb::GetActionRequest, action_id),
        "ListAuditEvents" => unary!(list_audit_events, pb::ListAuditEventsRequest, device_id),
        "ListRoles" => unary!(list_roles, pb::ListRolesRequest),
        "CreateRole" => unary!(create_role, pb::Role),
        "UpdateRole" => unary!(update_role, pb::Role),
        "DeleteRole" => unary!(delete_role, pb::DeleteRoleRequest),
        "CreatePrincipal" => unary!(create_principal, pb::CreatePrincipalRequest),
        "ListPrincipals" => unary!(list_principals, pb::ListPrincipalsRequest),
        "AssignRole" => unary!(assign_role, pb::RoleAssignmentRequest),
        "UnassignRole" => unary!(unassign_role, pb::RoleAssignmentRequest),
        "DeletePrincipal" => unary!(delete_principal, pb::DeletePrincipalRequest),
        "GetCaller" => unary!(get_caller, pb::GetCallerRequest, device_id),
        other => unreachable!("{other} is in RPCS"),
    })
}

#[test]
fn admin_requests() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let fixture = runtime.block_on(fixture(dir.path()));
    fuzz("admin_requests", seeds(), |input| {
        let Some((&selector, body)) = input.split_first() else {
            return "empty".into();
        };
        let rpc = RPCS[usize::from(selector) % RPCS.len()];
        match runtime.block_on(call(&fixture, rpc, body)) {
            None => format!("{rpc}: not its request"),
            Some(Ok(())) => format!("{rpc}: ok"),
            Some(Err(status)) => {
                assert!(
                    !matches!(status.code(), Code::Internal | Code::Unknown),
                    "{rpc} answered {:?}: {}",
                    status.code(),
                    status.message()
                );
                assert!(
                    !status.message().is_empty(),
                    "{rpc}: a status without a reason"
                );
                // The label keeps the message's fixed words, not the ids and values in it.
                let words: String = status
                    .message()
                    .chars()
                    .take_while(|c| !matches!(c, '"' | ':' | '('))
                    .filter(|c| !c.is_ascii_digit())
                    .take(48)
                    .collect();
                format!("{rpc}: {:?} {words}", status.code())
            }
        }
    });
}
