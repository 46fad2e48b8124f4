//! `droidfleet demo`: the whole reset-passcode flow on this machine, narrated for a help-desk
//! operator. A control plane runs on a temporary SQLite file and a loopback port; an in-process
//! agent hosts one device of each enrollment type; the demo plays both the admin (over the real
//! admin API) and each device's user (through the agent's harness operations).

use crate::admin::format::{error_name, state_name};
use crate::admin::{AdminError, Client, Token};
use crate::embedded::{EmbeddedControlPlane, EmbeddedError};
use droidfleet_agent::cli::Argon2Preset;
use droidfleet_agent::device::{Build, EntryOutcome, Ownership, Passcode, Scope};
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig, FleetError};
use droidfleet_control_plane::clock::SystemClock;
use droidfleet_proto::v1 as pb;
use std::sync::Arc;
use std::time::Duration;

/// Why the demo stopped. No error carries a token or a passcode (the demo's passcodes are made
/// up and shown on purpose, in its narration only).
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("cannot create a temporary directory")]
    TempDir(#[source] std::io::Error),
    #[error("cannot start the demo's control plane")]
    ControlPlane(#[from] EmbeddedError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error(transparent)]
    Fleet(#[from] FleetError),
    #[error("{device} did not enroll within 30 s")]
    NotEnrolled { device: &'static str },
    #[error("device {device_id} did not escrow its reset token within 30 s")]
    NotEscrowed { device_id: String },
    /// A step did not end the way Android and the control plane promise.
    #[error("the demo went off script: {0}")]
    Unexpected(String),
}

/// Fails with [`DemoError::Unexpected`] unless `holds`.
fn require(holds: bool, what: impl FnOnce() -> String) -> Result<(), DemoError> {
    if holds {
        Ok(())
    } else {
        Err(DemoError::Unexpected(what()))
    }
}

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Cost of the simulated devices' passcode hashing.
    #[arg(long, value_enum, default_value_t = Argon2Preset::Realistic)]
    argon2: Argon2Preset,
}

struct DemoDevice {
    name: &'static str,
    ownership: Ownership,
    words: &'static str,
    device_passcode: &'static str,
    work_passcode: Option<&'static str>,
}

const DEVICES: [DemoDevice; 5] = [
    DemoDevice {
        name: "kiosk-cosu",
        ownership: Ownership::Cosu,
        words: "corporate-owned dedicated (kiosk)",
        device_passcode: "2580",
        work_passcode: None,
    },
    DemoDevice {
        name: "sales-cobo",
        ownership: Ownership::Cobo,
        words: "corporate-owned fully managed",
        device_passcode: "1357",
        work_passcode: Some("work2468"),
    },
    DemoDevice {
        name: "field-cope",
        ownership: Ownership::Cope,
        words: "corporate-owned with a work profile",
        device_passcode: "9753",
        work_passcode: Some("field8642"),
    },
    DemoDevice {
        name: "alice-byod",
        ownership: Ownership::Byod,
        words: "personally owned with a work profile",
        device_passcode: "4826",
        work_passcode: Some("alice7391"),
    },
    DemoDevice {
        name: "lab-aosp",
        ownership: Ownership::Aosp,
        words: "Android Open Source Project",
        device_passcode: "6159",
        work_passcode: None,
    },
];

fn step(text: impl AsRef<str>) {
    println!("  - {}", text.as_ref());
}

pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let dir = tempfile::tempdir().map_err(DemoError::TempDir)?;
    println!("droidfleet demo: reset passcode on every Android enrollment type\n");

    let control_plane =
        EmbeddedControlPlane::start(&dir.path().join("control-plane"), Arc::new(SystemClock))
            .await?;
    let address = control_plane.address.clone();
    println!("Control plane started on {address} (database in a temporary folder).");

    let admin =
        Client::connect(&address, Some(control_plane.ca), &control_plane.admin_token).await?;
    let enrollment = admin
        .create_enrollment_token(pb::CreateEnrollmentTokenRequest {
            max_uses: 5,
            ttl_seconds: 600,
            ..Default::default()
        })
        .await?;

    let fleet = Fleet::load(FleetConfig {
        control_plane: address.clone(),
        state_dir: Some(dir.path().join("agent")),
        enrollment_token: Some(enrollment.enrollment_token),
        kdf: args.argon2.params(),
        devices: DEVICES
            .iter()
            .map(|d| DeviceSpec {
                name: d.name.to_string(),
                ownership: d.ownership,
                build: Build::default(),
            })
            .collect(),
        clock: Arc::new(droidfleet_agent::clock::SystemClock),
        connections: 1,
        faults: Default::default(),
    })
    .await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(fleet.clone().run(stopped));

    let outcome = play(&fleet, &admin).await;
    let _ = stop.send(true);
    let _ = agent.await;
    control_plane.stop().await;
    outcome?;
    println!("\nDemo finished: every enrollment type was reset, and every refusal was explained.");
    Ok(())
}

async fn play(fleet: &Arc<Fleet>, admin: &Client) -> Result<(), DemoError> {
    println!("\n1. Enrolling one device of each type and setting up their users");
    let mut ids = Vec::new();
    for device in &DEVICES {
        let id = wait_enrolled(fleet, device.name).await?;
        fleet
            .set_passcode(
                device.name,
                Scope::Device,
                None,
                Passcode::new(device.device_passcode),
            )
            .await?;
        let mut line = format!(
            "{} ({}, {}) enrolled as {id}; the user set a device PIN",
            device.name,
            device.ownership.as_str().to_uppercase(),
            device.words
        );
        if let Some(work) = device.work_passcode {
            fleet
                .set_passcode(
                    device.name,
                    Scope::WorkProfile,
                    Some(Passcode::new(device.device_passcode)),
                    Passcode::new(work),
                )
                .await?;
            line.push_str(" and a separate work-profile password");
        }
        let target = target_scope(device);
        fleet
            .write_user_data(
                device.name,
                target,
                "notes".into(),
                format!("{}'s notes", device.name).into_bytes(),
            )
            .await?;
        step(format!(
            "{line}, and saved a note in the {}",
            scope_words(target)
        ));
        ids.push(id);
    }
    for (device, id) in DEVICES.iter().zip(&ids) {
        wait_escrowed(admin, id, target_scope(device)).await?;
    }
    step("each device's management app escrowed a reset token with the control plane");

    println!("\n2. Refusals an operator may meet");
    let cosu = &ids[0];
    let action = reset(admin, cosu, None).await?;
    step(format!(
        "reset of {} before any passcode policy: {} [{}] - {}",
        DEVICES[0].name,
        state_name(action.state),
        error_name(action.error_code),
        action.reason
    ));
    require(state_name(action.state) == "failed", || {
        "expected a refusal without policy".into()
    })?;
    let action = reset(admin, cosu, Some(pb::CredentialScope::WorkProfile)).await?;
    step(format!(
        "work-profile reset of a COSU device: {} - {}",
        state_name(action.state),
        action.reason
    ));
    require(state_name(action.state) == "not_supported", || {
        "expected not_supported".into()
    })?;
    let reader_token = admin
        .create_principal(pb::CreatePrincipalRequest {
            name: "rita.reader".into(),
            roles: vec!["Read Only Operator".into()],
            ..Default::default()
        })
        .await?
        .bearer_token;
    let reader = admin.with_token(&Token::new(&reader_token))?;
    let refused = match reader
        .reset_passcode(pb::ResetPasscodeRequest {
            device_id: cosu.clone(),
            ..Default::default()
        })
        .await
    {
        Err(AdminError::Rpc { status, .. }) => status,
        Err(other) => return Err(other.into()),
        Ok(_) => {
            return Err(DemoError::Unexpected(
                "a Read Only Operator must not reset passcodes".into(),
            ));
        }
    };
    step(format!(
        "rita.reader (Read Only Operator) asks for a reset: refused, {:?}: {}",
        refused.code(),
        refused.message()
    ));

    println!("\n3. Assigning passcode policies");
    for (device, id) in DEVICES.iter().zip(&ids) {
        let scope = target_scope(device);
        let (kind, min) = if scope == Scope::Device {
            (pb::PasscodeType::Pin, 6)
        } else {
            (pb::PasscodeType::Alphanumeric, 8)
        };
        admin
            .assign_passcode_policy(pb::AssignPasscodePolicyRequest {
                device_id: id.clone(),
                scope: scope_pb(scope) as i32,
                policy: Some(pb::PasscodePolicy {
                    r#type: kind as i32,
                    min_length: min,
                    ..Default::default()
                }),
            })
            .await?;
        step(format!(
            "{}: {} requires a {} of at least {min} characters",
            device.name,
            scope_words(scope),
            if scope == Scope::Device {
                "PIN"
            } else {
                "letters-and-digits password"
            }
        ));
    }

    println!("\n4. Resetting each passcode and having the user enter the new one");
    for (device, id) in DEVICES.iter().zip(&ids) {
        let scope = target_scope(device);
        let old = if scope == Scope::Device {
            device.device_passcode
        } else {
            device.work_passcode.unwrap_or_default()
        };
        let action = reset(admin, id, None).await?;
        let done = admin.watch_action(&action.action_id, false, |_| {}).await?;
        require(state_name(done.state) == "done", || {
            format!(
                "reset of {} ended {} ({})",
                device.name,
                state_name(done.state),
                done.reason
            )
        })?;
        let passcode = admin.reveal_passcode(&action.action_id).await?.passcode;
        step(format!(
            "{}: {} reset is done; the admin reads the new passcode {passcode:?} to the user",
            device.name,
            scope_words(scope)
        ));

        if device.name == "alice-byod" {
            let again = reset(admin, id, None).await?;
            let again = admin.watch_action(&again.action_id, false, |_| {}).await?;
            step(format!(
                "a second reset before the user entered the new passcode: {} [{}] - {}",
                state_name(again.state),
                error_name(again.error_code),
                again.reason
            ));
            require(error_name(again.error_code) == "token_not_active", || {
                "expected token_not_active".into()
            })?;
        }

        let screen = fleet.screen(device.name)?;
        if scope == Scope::WorkProfile {
            let note = screen
                .notifications
                .iter()
                .find(|n| n.scope == Scope::WorkProfile)
                .ok_or_else(|| {
                    DemoError::Unexpected("a work-profile reset raises a notification".into())
                })?;
            step(format!(
                "the phone shows: \"{}: {}\"",
                note.title, note.text
            ));
            let device_still = fleet
                .enter_passcode(
                    device.name,
                    Scope::Device,
                    Passcode::new(device.device_passcode),
                )
                .await?;
            require(matches!(device_still, EntryOutcome::Unlocked), || {
                "the device PIN must be untouched".into()
            })?;
            step("the device PIN still unlocks the phone: only the work profile was reset");
        }
        let refused = fleet
            .enter_passcode(device.name, scope, Passcode::new(old))
            .await?;
        require(!matches!(refused, EntryOutcome::Unlocked), || {
            "the old passcode must no longer work".into()
        })?;
        step("the old passcode is refused");
        if scope == Scope::WorkProfile {
            let kept = !fleet.screen(device.name)?.notifications.is_empty();
            require(kept, || "a wrong entry keeps the notification".into())?;
            step("after that wrong entry the notification is still there");
        }
        let entered = fleet
            .enter_passcode(device.name, scope, Passcode::new(passcode))
            .await?;
        require(matches!(entered, EntryOutcome::Unlocked), || {
            "the new passcode must unlock".into()
        })?;
        let notes = fleet
            .read_user_data(device.name, scope, "notes")?
            .unwrap_or_default();
        require(
            notes == format!("{}'s notes", device.name).into_bytes(),
            || "user data must survive the reset".into(),
        )?;
        let cleared = fleet.screen(device.name)?.notifications.is_empty();
        require(cleared, || "the right entry clears the notification".into())?;
        step(format!(
            "the new passcode unlocks the {}; no notification is left; the saved note reads back intact",
            scope_words(scope)
        ));
    }
    Ok(())
}

fn target_scope(device: &DemoDevice) -> Scope {
    if device.work_passcode.is_some() {
        Scope::WorkProfile
    } else {
        Scope::Device
    }
}

fn scope_words(scope: Scope) -> &'static str {
    match scope {
        Scope::Device => "device lock screen",
        Scope::WorkProfile => "work profile",
    }
}

fn scope_pb(scope: Scope) -> pb::CredentialScope {
    match scope {
        Scope::Device => pb::CredentialScope::Device,
        Scope::WorkProfile => pb::CredentialScope::WorkProfile,
    }
}

async fn reset(
    admin: &Client,
    device_id: &str,
    scope: Option<pb::CredentialScope>,
) -> Result<pb::Action, AdminError> {
    admin
        .reset_passcode(pb::ResetPasscodeRequest {
            device_id: device_id.to_string(),
            scope: scope.map(|s| s as i32).unwrap_or(0),
            ..Default::default()
        })
        .await
}

/// Waits (bounded) until the device has enrolled and connected.
async fn wait_enrolled(fleet: &Arc<Fleet>, name: &'static str) -> Result<String, DemoError> {
    let mut changes = fleet.screen_changes();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let screen = fleet.screen(name)?;
        if let (Some(id), true) = (screen.device_id, screen.connected) {
            return Ok(id);
        }
        match tokio::time::timeout_at(deadline, changes.recv()).await {
            Ok(_) => {}
            Err(_) => return Err(DemoError::NotEnrolled { device: name }),
        }
    }
}

/// Waits (bounded) until the control plane holds the device's escrow token for `scope`.
async fn wait_escrowed(admin: &Client, device_id: &str, scope: Scope) -> Result<(), DemoError> {
    let wanted = scope_pb(scope) as i32;
    let escrowed = admin.wait_device(device_id, |device| {
        device.escrowed_token_scopes.contains(&wanted)
    });
    match tokio::time::timeout(Duration::from_secs(30), escrowed).await {
        Ok(outcome) => outcome.map(|_| ()).map_err(DemoError::from),
        Err(_) => Err(DemoError::NotEscrowed {
            device_id: device_id.to_string(),
        }),
    }
}
