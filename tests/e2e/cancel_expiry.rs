//! Cancel and expiry never strand a device (issue 11, acceptance 3): with every session message
//! delayed by up to 2.5 s, resets are canceled as soon as they are issued or once they were sent
//! (then only a request the device answers), and others are given a 2 s time-to-live. No action ends canceled or expired while its device
//! applied the passcode, and the admin can always reveal the passcode the device holds.

use crate::support::{DEADLINE, Embedded, Kiosks, pin_policy};
use droidfleet_agent::device::{EntryOutcome, Passcode, Scope};
use droidfleet_agent::faults::FaultConfig;
use droidfleet_proto::v1 as pb;

const DEVICES: usize = 8;

fn state(action: &pb::Action) -> pb::ActionState {
    pb::ActionState::try_from(action.state).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_passcode_is_lost_to_cancel_or_expiry_under_message_delays() {
    let control_plane = Embedded::start().await;
    let mut admin = control_plane.admin().await;
    let enrollment_token = admin.enrollment_token(DEVICES as u32, "").await;
    let faults: FaultConfig = "delay=1:2500ms".parse().unwrap();
    let kiosks = Kiosks::start(
        &control_plane.address,
        enrollment_token,
        DEVICES,
        faults,
        11,
    )
    .await;
    let (fleet, devices) = (&kiosks.fleet, &kiosks.devices);
    let enrolled = |name: &str| fleet.screen(name).unwrap().device_id;

    let mut runs = tokio::task::JoinSet::new();
    for (index, spec) in devices.iter().enumerate() {
        let fleet = fleet.clone();
        let id = enrolled(&spec.name).unwrap();
        let name = spec.name.clone();
        let mut admin = control_plane.admin().await;
        runs.spawn(async move {
            let first_text = format!("{:06}", 310_270 + index);
            fleet
                .set_passcode(
                    &name,
                    Scope::Device,
                    None,
                    Passcode::new(first_text.clone()),
                )
                .await
                .unwrap();
            admin.wait_escrowed(&id, pb::CredentialScope::Device).await;
            admin
                .assign_policy(&id, pb::CredentialScope::Device, pin_policy(6))
                .await;

            // Half the devices cancel at once (the command may not have left yet), half once the
            // control plane shows it sent (it is on the wire, delayed).
            let canceled = admin.reset(&id, pb::CredentialScope::Device).await.unwrap();
            if index % 2 == 1 {
                wait_sent(&mut admin, &canceled.action_id).await;
            }
            match admin.cancel(&canceled.action_id).await {
                // Never sent: canceled at once.
                Ok(action) if action.cancel_requested_at_ms == 0 => {
                    assert_eq!(state(&action), pb::ActionState::Canceled, "{name}");
                    assert_eq!(action.sent_at_ms, 0, "{name}: a sent command was canceled");
                }
                // Sent: only a request, which the device answers.
                Ok(action) => {
                    assert!(action.sent_at_ms > 0, "{name}: {action:?}");
                    assert_ne!(state(&action), pb::ActionState::Canceled, "{name}");
                }
                // The device's result came first.
                Err(refused) => {
                    assert_eq!(refused.code(), tonic::Code::FailedPrecondition, "{name}");
                    assert!(
                        refused.message().contains("can no longer be canceled"),
                        "{name}: {}",
                        refused.message()
                    );
                }
            }

            let short_lived = reset_with_ttl(&mut admin, &id, 2).await;

            // Commands and results travel in order, so once a later remote lock is done the
            // device has answered both resets, however late. (A lock, not a reset: after an
            // applied reset the token waits for the user's entry.)
            let lock = admin
                .remote_lock(&id, pb::CredentialScope::Device)
                .await
                .unwrap();
            let last = admin.wait_final(&lock.action_id).await;
            assert_eq!(state(&last), pb::ActionState::Done, "{name}: {last:?}");

            // The passcode the device holds is the one of its newest reset that ended done (or
            // the user's own, when none did): a reset the device applied while its action ended
            // canceled or expired would leave the device holding another one.
            let mut outcomes = Vec::new();
            let mut holds = first_text;
            for action_id in [&canceled.action_id, &short_lived.action_id] {
                let action = admin.action(action_id).await;
                if state(&action) == pb::ActionState::Done {
                    holds = admin.reveal(action_id).await.unwrap_or_else(|status| {
                        panic!("{name}: the passcode of a done reset is not revealable: {status}")
                    });
                }
                outcomes.push((state(&action), action.reason.contains("late arrival")));
            }
            let typed = fleet
                .enter_passcode(&name, Scope::Device, Passcode::new(holds))
                .await
                .unwrap();
            assert!(matches!(typed, EntryOutcome::Unlocked), "{name}: {typed}");
            outcomes
        });
    }
    let outcomes: Vec<_> = runs.join_all().await.into_iter().flatten().collect();
    // The run exercised the cases it is about: a cancel refused because the command was on the
    // wire, and a command that outlived its time-to-live.
    assert!(
        outcomes
            .iter()
            .step_by(2)
            .any(|(state, _)| *state == pb::ActionState::Done),
        "no canceled reset was already on the wire: {outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .skip(1)
            .step_by(2)
            .any(|(state, late)| { *state == pb::ActionState::Expired || *late }),
        "no 2 s reset outlived its time-to-live: {outcomes:?}"
    );
    kiosks.stop().await;
    control_plane.stop().await;
}

/// Follows the action until the control plane has sent it to the device.
async fn wait_sent(admin: &mut crate::support::Admin, action_id: &str) {
    let request = admin.request(pb::GetActionRequest {
        action_id: action_id.to_string(),
        ..Default::default()
    });
    let mut stream = admin
        .client
        .watch_action(request)
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(DEADLINE, async {
        while let Some(action) = stream.message().await.unwrap() {
            if action.sent_at_ms > 0 {
                return;
            }
        }
        panic!("the watch of {action_id} ended before it was sent");
    })
    .await
    .expect("the reset is sent");
}

async fn reset_with_ttl(
    admin: &mut crate::support::Admin,
    device_id: &str,
    ttl_seconds: u64,
) -> pb::Action {
    let request = admin.request(pb::ResetPasscodeRequest {
        device_id: device_id.to_string(),
        scope: pb::CredentialScope::Device as i32,
        ttl_seconds,
        ..Default::default()
    });
    admin
        .client
        .reset_passcode(request)
        .await
        .unwrap()
        .into_inner()
}
