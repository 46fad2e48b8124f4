//! The admin side: an AdminService client acting as one principal, with a helper per call the
//! tests make (waiting ones follow the Watch streams up to [`DEADLINE`]), and the passcode
//! policies they assign.

use super::DEADLINE;
use droidfleet_proto::tls::CaFingerprint;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_client::AdminServiceClient;
use tonic::transport::Channel;

/// An admin API client carrying one principal's bearer token (or none).
#[derive(Clone)]
pub(crate) struct Admin {
    /// The raw client, for the calls (and the malformed requests) no helper makes.
    pub(crate) client: AdminServiceClient<Channel>,
    /// Sent as `authorization: Bearer …`; `None` tests the unauthenticated path.
    pub(crate) token: Option<String>,
}

impl Admin {
    /// A client of a control plane serving plaintext on loopback (`http://`).
    pub(crate) async fn connect(address: &str, token: Option<String>) -> Admin {
        Admin::connect_pinned(address, None, token).await
    }

    /// A client of `address`, pinning the CA `ca` when it is `https://`.
    pub(crate) async fn connect_pinned(
        address: &str,
        ca: Option<CaFingerprint>,
        token: Option<String>,
    ) -> Admin {
        let channel = droidfleet_proto::tls::client_endpoint(address, ca)
            .unwrap()
            .connect()
            .await
            .unwrap();
        Admin {
            client: AdminServiceClient::new(channel),
            token,
        }
    }

    pub(crate) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }

    pub(crate) async fn reset(
        &mut self,
        device_id: &str,
        scope: pb::CredentialScope,
    ) -> Result<pb::Action, tonic::Status> {
        let request = self.request(pb::ResetPasscodeRequest {
            device_id: device_id.to_string(),
            scope: scope as i32,
            ..Default::default()
        });
        Ok(self.client.reset_passcode(request).await?.into_inner())
    }

    pub(crate) async fn action(&mut self, action_id: &str) -> pb::Action {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            ..Default::default()
        });
        self.client.get_action(request).await.unwrap().into_inner()
    }

    /// Follows the action with WatchAction until its final state.
    pub(crate) async fn wait_final(&mut self, action_id: &str) -> pb::Action {
        self.watch_to_end(action_id, false).await
    }

    /// Follows a reset with WatchAction past its final state until the user has entered the new
    /// passcode (or, for a reset that did not end done, until its final state).
    pub(crate) async fn wait_entered(&mut self, action_id: &str) -> pb::Action {
        self.watch_to_end(action_id, true).await
    }

    async fn watch_to_end(&mut self, action_id: &str, until_user_entered: bool) -> pb::Action {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            until_user_entered,
        });
        let mut stream = self
            .client
            .watch_action(request)
            .await
            .unwrap()
            .into_inner();
        let mut last = None;
        tokio::time::timeout(DEADLINE, async {
            while let Some(action) = stream.message().await.unwrap() {
                last = Some(action);
            }
        })
        .await
        .expect("the action reaches the awaited state in time");
        last.expect("WatchAction sends at least the current state")
    }

    /// Follows the device with WatchDevice until `ready` holds.
    pub(crate) async fn wait_device(
        &mut self,
        device_id: &str,
        ready: impl Fn(&pb::Device) -> bool,
    ) -> pb::Device {
        let request = self.request(pb::GetDeviceRequest {
            device_id: device_id.to_string(),
        });
        let mut stream = self
            .client
            .watch_device(request)
            .await
            .unwrap()
            .into_inner();
        tokio::time::timeout(DEADLINE, async {
            while let Some(device) = stream.message().await.unwrap() {
                if ready(&device) {
                    return device;
                }
            }
            panic!("WatchDevice ended before the device was ready")
        })
        .await
        .expect("the device reaches the expected state in time")
    }

    pub(crate) async fn wait_escrowed(&mut self, device_id: &str, scope: pb::CredentialScope) {
        self.wait_device(device_id, |d| {
            d.escrowed_token_scopes.contains(&(scope as i32))
        })
        .await;
    }

    pub(crate) async fn assign_policy(
        &mut self,
        device_id: &str,
        scope: pb::CredentialScope,
        policy: pb::PasscodePolicy,
    ) {
        let request = self.request(pb::AssignPasscodePolicyRequest {
            device_id: device_id.to_string(),
            scope: scope as i32,
            policy: Some(policy),
        });
        self.client.assign_passcode_policy(request).await.unwrap();
    }

    pub(crate) async fn reveal(&mut self, action_id: &str) -> Result<String, tonic::Status> {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            ..Default::default()
        });
        Ok(self
            .client
            .reveal_passcode(request)
            .await?
            .into_inner()
            .passcode)
    }

    pub(crate) async fn audit(&mut self, operation: &str) -> Vec<pb::AuditEvent> {
        let request = self.request(pb::ListAuditEventsRequest {
            operation: operation.to_string(),
            ..Default::default()
        });
        self.client
            .list_audit_events(request)
            .await
            .unwrap()
            .into_inner()
            .events
    }

    /// Creates a principal with `roles` and returns a client acting as it.
    pub(crate) async fn principal(&mut self, name: &str, roles: &[&str]) -> Admin {
        let request = self.request(pb::CreatePrincipalRequest {
            name: name.to_string(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        });
        let token = self
            .client
            .create_principal(request)
            .await
            .unwrap()
            .into_inner()
            .bearer_token;
        Admin {
            client: self.client.clone(),
            token: Some(token),
        }
    }

    /// Creates a principal holding `roles` for device group `group` only.
    pub(crate) async fn principal_in_group(
        &mut self,
        name: &str,
        roles: &[&str],
        group: &str,
    ) -> Admin {
        let request = self.request(pb::CreatePrincipalRequest {
            name: name.to_string(),
            assignments: roles
                .iter()
                .map(|r| pb::RoleAssignment {
                    role: r.to_string(),
                    group: group.to_string(),
                })
                .collect(),
            ..Default::default()
        });
        let token = self
            .client
            .create_principal(request)
            .await
            .unwrap()
            .into_inner()
            .bearer_token;
        Admin {
            client: self.client.clone(),
            token: Some(token),
        }
    }

    /// An enrollment token for `uses` devices of `group` ("" for the default group).
    pub(crate) async fn enrollment_token(&mut self, uses: u32, group: &str) -> String {
        let request = self.request(pb::CreateEnrollmentTokenRequest {
            max_uses: uses,
            ttl_seconds: 600,
            group: group.to_string(),
        });
        self.client
            .create_enrollment_token(request)
            .await
            .unwrap()
            .into_inner()
            .enrollment_token
    }

    pub(crate) async fn remote_lock(
        &mut self,
        device_id: &str,
        scope: pb::CredentialScope,
    ) -> Result<pb::Action, tonic::Status> {
        let request = self.request(pb::RemoteLockRequest {
            device_id: device_id.to_string(),
            scope: scope as i32,
            ..Default::default()
        });
        Ok(self.client.remote_lock(request).await?.into_inner())
    }

    pub(crate) async fn cancel(&mut self, action_id: &str) -> Result<pb::Action, tonic::Status> {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
            ..Default::default()
        });
        Ok(self.client.cancel_action(request).await?.into_inner())
    }

    /// Every device the principal sees, over as many ListDevices pages as that takes.
    pub(crate) async fn devices(&mut self) -> Result<Vec<pb::Device>, tonic::Status> {
        let (mut devices, mut page_token) = (Vec::new(), String::new());
        // Bounded: far more pages of the default 1000 than any test enrolls devices.
        for _ in 0..1000 {
            let request = self.request(pb::ListDevicesRequest {
                page_token,
                ..Default::default()
            });
            let page = self.client.list_devices(request).await?.into_inner();
            devices.extend(page.devices);
            page_token = page.next_page_token;
            if page_token.is_empty() {
                break;
            }
        }
        Ok(devices)
    }

    pub(crate) async fn actions(
        &mut self,
        device_id: &str,
    ) -> Result<Vec<pb::Action>, tonic::Status> {
        let request = self.request(pb::ListActionsRequest {
            device_id: device_id.to_string(),
            ..Default::default()
        });
        Ok(self
            .client
            .list_actions(request)
            .await?
            .into_inner()
            .actions)
    }
}

/// A numeric PIN of at least `min_length` digits.
pub(crate) fn pin_policy(min_length: u32) -> pb::PasscodePolicy {
    pb::PasscodePolicy {
        r#type: pb::PasscodeType::Pin as i32,
        min_length,
        ..Default::default()
    }
}

/// An alphanumeric passcode (letters and digits) of at least `min_length` characters.
pub(crate) fn password_policy(min_length: u32) -> pb::PasscodePolicy {
    pb::PasscodePolicy {
        r#type: pb::PasscodeType::Alphanumeric as i32,
        min_length,
        ..Default::default()
    }
}
