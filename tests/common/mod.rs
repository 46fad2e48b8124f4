//! A control plane and an agent, both in this process but talking real gRPC over loopback, with
//! clients for the admin API and the device harness. Time on the control plane is a manual clock
//! that starts at the wall clock's now.

#![allow(dead_code)] // Each test binary uses a different part of this module.

use droidfleet::clock::{Clock, ManualClock, SystemClock};
use droidfleet::service::{Config, ControlPlane};
use droidfleet_agent::device::{KdfParams, Ownership};
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig};
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_client::AdminServiceClient;
use droidfleet_proto::v1::device_harness_client::DeviceHarnessClient;
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::Channel;

/// The longest any test waits for an event before failing.
pub const DEADLINE: Duration = Duration::from_secs(60);

pub struct World {
    pub control_plane: Arc<ControlPlane>,
    pub clock: ManualClock,
    pub address: String,
    pub admin: Admin,
    pub harness: DeviceHarnessClient<Channel>,
    pub fleet: Arc<Fleet>,
    pub data_dir: tempfile::TempDir,
    _agent_dir: tempfile::TempDir,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// An admin API client carrying one principal's bearer token (or none).
#[derive(Clone)]
pub struct Admin {
    pub client: AdminServiceClient<Channel>,
    pub token: Option<String>,
}

impl Admin {
    pub async fn connect(address: &str, token: Option<String>) -> Admin {
        let channel = tonic::transport::Endpoint::from_shared(address.to_string())
            .unwrap()
            .connect()
            .await
            .unwrap();
        Admin {
            client: AdminServiceClient::new(channel),
            token,
        }
    }

    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(token) = &self.token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {token}").parse().unwrap());
        }
        request
    }

    pub async fn reset(
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

    pub async fn action(&mut self, action_id: &str) -> pb::Action {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
        });
        self.client.get_action(request).await.unwrap().into_inner()
    }

    /// Follows the action with WatchAction until its final state.
    pub async fn wait_final(&mut self, action_id: &str) -> pb::Action {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
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
        .expect("the action reaches a final state in time");
        last.expect("WatchAction sends at least the current state")
    }

    /// Follows the device with WatchDevice until `ready` holds.
    pub async fn wait_device(
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

    pub async fn wait_escrowed(&mut self, device_id: &str, scope: pb::CredentialScope) {
        self.wait_device(device_id, |d| {
            d.escrowed_token_scopes.contains(&(scope as i32))
        })
        .await;
    }

    pub async fn assign_policy(
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

    pub async fn reveal(&mut self, action_id: &str) -> Result<String, tonic::Status> {
        let request = self.request(pb::GetActionRequest {
            action_id: action_id.to_string(),
        });
        Ok(self
            .client
            .reveal_passcode(request)
            .await?
            .into_inner()
            .passcode)
    }

    pub async fn audit(&mut self, operation: &str) -> Vec<pb::AuditEvent> {
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
    pub async fn principal(&mut self, name: &str, roles: &[&str]) -> Admin {
        let request = self.request(pb::CreatePrincipalRequest {
            name: name.to_string(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
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
}

pub fn pin_policy(min_length: u32) -> pb::PasscodePolicy {
    pb::PasscodePolicy {
        r#type: pb::PasscodeType::Pin as i32,
        min_length,
        ..Default::default()
    }
}

pub fn password_policy(min_length: u32) -> pb::PasscodePolicy {
    pb::PasscodePolicy {
        r#type: pb::PasscodeType::Alphanumeric as i32,
        min_length,
        ..Default::default()
    }
}

impl World {
    /// Starts a control plane and an agent hosting `devices`, and waits until every device has
    /// enrolled and connected.
    pub async fn start(devices: &[(&str, Ownership)]) -> World {
        World::start_with(devices, |_| {}).await
    }

    pub async fn start_with(
        devices: &[(&str, Ownership)],
        tune: impl FnOnce(&mut Config),
    ) -> World {
        let data_dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let mut config = Config::new(data_dir.path());
        tune(&mut config);
        let opened = droidfleet::server::open(config, Arc::new(clock.clone()))
            .await
            .unwrap();
        let token = std::fs::read_to_string(opened.bootstrap_token_path.unwrap())
            .unwrap()
            .trim()
            .to_string();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut server_stop = stopped.clone();
        let control_plane = opened.control_plane.clone();
        tokio::spawn(droidfleet::server::serve(
            opened.control_plane,
            listener,
            async move {
                let _ = server_stop.wait_for(|s| *s).await;
            },
        ));
        let mut admin = Admin::connect(&address, Some(token)).await;
        let request = admin.request(pb::CreateEnrollmentTokenRequest {
            max_uses: devices.len() as u32,
            ttl_seconds: 600,
        });
        let enrollment = admin
            .client
            .create_enrollment_token(request)
            .await
            .unwrap()
            .into_inner()
            .enrollment_token;

        let agent_dir = tempfile::tempdir().unwrap();
        let fleet = Fleet::load(FleetConfig {
            control_plane: address.clone(),
            state_dir: agent_dir.path().to_path_buf(),
            enrollment_token: Some(enrollment),
            kdf: KdfParams::LIGHT,
            devices: devices
                .iter()
                .map(|(name, ownership)| DeviceSpec {
                    name: name.to_string(),
                    ownership: *ownership,
                })
                .collect(),
            clock: Arc::new(droidfleet_agent::clock::SystemClock),
        })
        .await
        .unwrap();
        tokio::spawn(fleet.clone().run(stopped.clone()));
        let harness_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let harness_address = format!("http://{}", harness_listener.local_addr().unwrap());
        let mut harness_stop = stopped.clone();
        tokio::spawn(droidfleet_agent::harness::serve(
            fleet.clone(),
            harness_listener,
            async move {
                let _ = harness_stop.wait_for(|s| *s).await;
            },
        ));
        let harness = DeviceHarnessClient::connect(harness_address).await.unwrap();
        let mut world = World {
            control_plane,
            clock,
            address,
            admin,
            harness,
            fleet,
            data_dir,
            _agent_dir: agent_dir,
            stop,
        };
        for (name, _) in devices {
            world
                .wait_screen(name, |s| s.connected && !s.device_id.is_empty())
                .await;
        }
        world
    }

    /// Follows the device's screen with WatchScreens until `ready` holds.
    pub async fn wait_screen(
        &mut self,
        name: &str,
        ready: impl Fn(&pb::Screen) -> bool,
    ) -> pb::Screen {
        let mut stream = self
            .harness
            .watch_screens(pb::WatchScreensRequest {
                name: name.to_string(),
            })
            .await
            .unwrap()
            .into_inner();
        tokio::time::timeout(DEADLINE, async {
            while let Some(screen) = stream.message().await.unwrap() {
                if ready(&screen) {
                    return screen;
                }
            }
            panic!("WatchScreens ended")
        })
        .await
        .expect("the device's screen reaches the expected state in time")
    }

    pub async fn screen(&mut self, name: &str) -> pb::Screen {
        self.harness
            .get_screen(pb::DeviceRef {
                name: name.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
    }

    pub async fn device_id(&mut self, name: &str) -> String {
        self.screen(name).await.device_id
    }

    pub async fn set_passcode(
        &mut self,
        name: &str,
        scope: pb::CredentialScope,
        current: &str,
        new: &str,
    ) {
        self.harness
            .set_passcode(pb::SetPasscodeRequest {
                name: name.to_string(),
                scope: scope as i32,
                current_passcode: current.to_string(),
                new_passcode: new.to_string(),
            })
            .await
            .unwrap();
    }

    /// Types a passcode; true when it unlocked the store.
    pub async fn enter(&mut self, name: &str, scope: pb::CredentialScope, passcode: &str) -> bool {
        self.harness
            .enter_passcode(pb::EnterPasscodeRequest {
                name: name.to_string(),
                scope: scope as i32,
                passcode: passcode.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .unlocked
    }

    pub async fn write(&mut self, name: &str, scope: pb::CredentialScope, key: &str, value: &[u8]) {
        self.harness
            .write_user_data(pb::WriteUserDataRequest {
                name: name.to_string(),
                scope: scope as i32,
                key: key.to_string(),
                value: value.to_vec(),
            })
            .await
            .unwrap();
    }

    pub async fn read(
        &mut self,
        name: &str,
        scope: pb::CredentialScope,
        key: &str,
    ) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(self
            .harness
            .read_user_data(pb::ReadUserDataRequest {
                name: name.to_string(),
                scope: scope as i32,
                key: key.to_string(),
            })
            .await?
            .into_inner()
            .value)
    }

    pub async fn lock(&mut self, name: &str, scope: pb::CredentialScope) {
        self.harness
            .lock(pb::StoreRef {
                name: name.to_string(),
                scope: scope as i32,
            })
            .await
            .unwrap();
    }

    pub fn store(screen: &pb::Screen, scope: pb::CredentialScope) -> &pb::StoreStatus {
        screen
            .stores
            .iter()
            .find(|s| s.scope == scope as i32)
            .expect("the screen shows the store")
    }
}
