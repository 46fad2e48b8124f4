//! The control-plane suite: the kit plays devices against a control plane under test (raw
//! devices that misbehave on purpose, and our simulated devices) and drives its admin side
//! through the admin API with the token the user gives it. Each case enrolls devices of its
//! own, so cases do not depend on one another.
//!
//! Layout: this file is the suite's context (admin client, enrolling raw devices, getting them
//! ready for a reset); `raw.rs` the raw device and its sessions; `cases_session.rs`,
//! `cases_results.rs` and `cases_delivery.rs` the cases, listed in [`cases`].

mod cases_delivery;
mod cases_results;
mod cases_session;
mod raw;

use super::ConformanceError;
use super::capabilities::Capabilities;
use super::catalogue::{Need, Suite};
use super::report::{CaseReport, Report};
use super::runner::{self, Case, Outcome, SuiteContext, fail};
use super::select::Selection;
use super::transcript::{self, Transcript};
use crate::admin::{Client, Token};
use droidfleet_proto::identity;
use droidfleet_proto::tls::CaFingerprint;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_gateway_client::DeviceGatewayClient;
use raw::RawDevice;
use std::time::Instant;

/// What a control-plane-suite run is given.
#[derive(Clone, Debug)]
pub struct ControlPlaneSuiteOptions {
    /// The control plane's device gateway, such as `http://127.0.0.1:7300`.
    pub gateway: String,
    /// Its admin API (usually the same address).
    pub admin: String,
    /// The CA its certificate chains to, for an `https://` gateway and admin API.
    pub ca: Option<CaFingerprint>,
    /// An admin's bearer token with every permission the cases use (the bootstrap admin's).
    pub token: Token,
    pub capabilities: Capabilities,
    pub selection: Selection,
}

/// Every case of the control-plane suite, in the order a run takes them.
pub(crate) fn cases() -> impl Iterator<Item = &'static Case<CpCtx>> {
    cases_session::CASES
        .iter()
        .chain(cases_results::CASES)
        .chain(cases_delivery::CASES)
}

/// Runs the selected cases against the control plane and returns the report; `each` sees every
/// case as it ends.
pub async fn run_control_plane_suite(
    options: ControlPlaneSuiteOptions,
    each: impl FnMut(&CaseReport),
) -> Result<Report, ConformanceError> {
    let catalogue: Vec<_> = cases().map(|c| c.info).collect();
    let selected = options.selection.apply(&catalogue)?;
    let admin = Client::connect(&options.admin, options.ca, &options.token).await?;
    // Fails early, and clearly, on a wrong token or a control plane without the admin API.
    admin.list_roles().await?;
    let started_at_ms = super::device::now_ms();
    let started = Instant::now();
    let mut context = CpCtx {
        gateway: options.gateway.clone(),
        ca: options.ca,
        admin,
        capabilities: options.capabilities.clone(),
        transcript: Transcript::default(),
        run: super::device::now_ms() % 1_000_000,
        next_name: 0,
    };
    let cases = runner::run_cases(&mut context, cases(), &selected, each).await;
    Ok(Report {
        suite: Suite::ControlPlane,
        implementation: options
            .capabilities
            .implementation
            .clone()
            .unwrap_or_else(|| "the control plane under test".into()),
        target: options.gateway,
        started_at_ms,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        cases,
    })
}

/// The control plane under test as the kit reaches it.
pub(crate) struct CpCtx {
    gateway: String,
    /// Pinned by every connection to the gateway.
    ca: Option<CaFingerprint>,
    admin: Client,
    capabilities: Capabilities,
    transcript: Transcript,
    /// Tells this run's devices apart from earlier runs' in the control plane's listings.
    run: u64,
    next_name: u32,
}

impl SuiteContext for CpCtx {
    fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    fn unmet(&self, need: Need) -> Option<String> {
        (!self.capabilities.declares(need)).then(|| {
            format!(
                "the capability statement does not declare {}",
                need.as_str()
            )
        })
    }
}

/// An admin API error as a case failure.
pub(crate) fn admin_failed(error: crate::admin::AdminError) -> Outcome {
    fail(format!("admin API: {error}"))
}

impl CpCtx {
    fn note(&self, text: impl Into<String>) {
        self.transcript.record("admin", text);
    }

    /// A single-use enrollment token.
    pub(crate) async fn enrollment_token(&self) -> Result<String, Outcome> {
        self.note("CreateEnrollmentToken max_uses=1");
        Ok(self
            .admin
            .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
                max_uses: 1,
                ttl_seconds: 600,
                ..Default::default()
            })
            .await
            .map_err(admin_failed)?
            .enrollment_token)
    }

    pub(crate) async fn gateway_client(
        &self,
    ) -> Result<DeviceGatewayClient<tonic::transport::Channel>, Outcome> {
        let endpoint = droidfleet_proto::tls::client_endpoint(&self.gateway, self.ca)
            .map_err(|e| fail(format!("the gateway's address: {e}")))?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| fail(format!("cannot reach the gateway at {}: {e}", self.gateway)))?;
        Ok(DeviceGatewayClient::new(channel))
    }

    /// Enrolls a raw device of `ownership`.
    pub(crate) async fn enroll(&mut self, ownership: pb::Ownership) -> Result<RawDevice, Outcome> {
        let token = self.enrollment_token().await?;
        self.next_name += 1;
        let name = format!("conformance-{}-{}", self.run, self.next_name);
        let mut client = self.gateway_client().await?;
        self.transcript.record(
            "device → cp",
            format!("Enroll ownership={ownership:?} display_name={name:?}"),
        );
        let mut key = [0u8; identity::KEY_LEN];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut key)
            .map_err(|_| fail("the system's random generator failed"))?;
        let response = client
            .enroll(pb::EnrollRequest {
                enrollment_token: token,
                ownership: ownership as i32,
                display_name: name,
                device_public_key: identity::device_public_key(&key).to_vec(),
            })
            .await
            .map_err(|status| {
                fail(format!(
                    "Enroll with a fresh token failed: {:?}: {}",
                    status.code(),
                    status.message()
                ))
            })?
            .into_inner();
        self.transcript.record(
            "cp → device",
            format!(
                "EnrollResponse device_id={:?} key=<{} bytes>",
                response.device_id,
                response.command_signing_public_key.len()
            ),
        );
        Ok(RawDevice {
            device_id: response.device_id,
            key,
            ca: self.ca.map(|ca| *ca.as_bytes()),
            signing_key: response.command_signing_public_key,
            ownership,
            client,
            transcript: self.transcript.clone(),
            token_state: pb::TokenState::Active,
        })
    }

    /// A raw device ready for resets: enrolled, its reset store's token (`token`) escrowed on a
    /// short session, and the kit's policy assigned to that store.
    pub(crate) async fn ready(
        &mut self,
        ownership: pb::Ownership,
        token: &[u8],
    ) -> Result<RawDevice, Outcome> {
        let device = self.enroll(ownership).await?;
        self.escrow(&device, token).await?;
        self.assign_policy(&device, Some(policy(device.reset_scope())))
            .await?;
        Ok(device)
    }

    /// Escrows `token` for the device's reset store on a short session.
    pub(crate) async fn escrow(&self, device: &RawDevice, token: &[u8]) -> Result<(), Outcome> {
        let mut session = device.open().await?;
        session
            .send(pb::device_message::Body::EscrowToken(
                pb::EscrowTokenUpdate {
                    scope: device.reset_scope() as i32,
                    token: token.to_vec(),
                },
            ))
            .await;
        match session.sync(device, &self.admin).await? {
            raw::Synced::Open => {}
            raw::Synced::Ended(status) => {
                return Err(fail(format!(
                    "the control plane ended a session after a valid escrow: {status:?}"
                )));
            }
        }
        session.close().await;
        Ok(())
    }

    pub(crate) async fn assign_policy(
        &self,
        device: &RawDevice,
        policy: Option<pb::PasscodePolicy>,
    ) -> Result<pb::Device, Outcome> {
        self.note(format!(
            "AssignPasscodePolicy {} scope={:?} policy={}",
            device.device_id,
            device.reset_scope(),
            policy
                .as_ref()
                .map(transcript::policy)
                .unwrap_or_else(|| "none".into())
        ));
        self.admin
            .assign_passcode_policy(pb::AssignPasscodePolicyRequest {
                device_id: device.device_id.clone(),
                scope: device.reset_scope() as i32,
                policy,
            })
            .await
            .map_err(admin_failed)
    }

    /// Asks for a reset of the device's reset store; `ttl_seconds` 0 is the default (600).
    pub(crate) async fn reset(
        &self,
        device: &RawDevice,
        ttl_seconds: u64,
    ) -> Result<pb::Action, Outcome> {
        let action = self
            .admin
            .reset_passcode(pb::ResetPasscodeRequest {
                device_id: device.device_id.clone(),
                scope: device.reset_scope() as i32,
                ttl_seconds,
                ..Default::default()
            })
            .await
            .map_err(admin_failed)?;
        self.note(format!(
            "ResetPasscode {} -> action {} ({})",
            device.device_id,
            action.action_id,
            state_name(action.state)
        ));
        runner::ensure!(
            action.state == pb::ActionState::Pending as i32,
            "a reset of a device with a policy and an escrowed token is {}, not pending",
            state_name(action.state)
        );
        Ok(action)
    }

    pub(crate) async fn action(&self, action_id: &str) -> Result<pb::Action, Outcome> {
        let action = self.admin.action(action_id).await.map_err(admin_failed)?;
        self.note(format!(
            "GetAction {action_id} -> {} {}",
            state_name(action.state),
            transcript::error_code(action.error_code)
        ));
        Ok(action)
    }

    pub(crate) async fn device(&self, device_id: &str) -> Result<pb::Device, Outcome> {
        self.admin.device(device_id).await.map_err(admin_failed)
    }
}

/// The kit's policy for a store: a PIN of 6 for the device, an alphanumeric password of 8 for
/// the work profile.
pub(crate) fn policy(scope: pb::CredentialScope) -> pb::PasscodePolicy {
    match scope {
        pb::CredentialScope::WorkProfile => pb::PasscodePolicy {
            r#type: pb::PasscodeType::Alphanumeric as i32,
            min_length: 8,
            ..Default::default()
        },
        _ => pb::PasscodePolicy {
            r#type: pb::PasscodeType::NumericComplex as i32,
            min_length: 6,
            ..Default::default()
        },
    }
}

pub(crate) fn state_name(state: i32) -> String {
    pb::ActionState::try_from(state)
        .map(|s| {
            s.as_str_name()
                .trim_start_matches("ACTION_STATE_")
                .to_string()
        })
        .unwrap_or_else(|_| state.to_string())
}
