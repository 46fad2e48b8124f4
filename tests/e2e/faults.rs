//! Message-level fault injection (`--faults`): with session messages delayed, duplicated, lost
//! and sessions broken in both directions, every reset still ends done, each device applies its
//! command exactly once, and every user's entry of the new passcode reaches the control plane
//! (a lost one is sent again on the device's next session). The agent counts each kind of fault
//! it injected, so the run proves the faults happened.

use crate::support::{Embedded, Kiosks, pin_policy};
use droidfleet_agent::device::{EntryOutcome, Passcode, Scope};
use droidfleet_agent::faults::FaultConfig;
use droidfleet_proto::v1 as pb;

const DEVICES: usize = 12;

/// The counter of one fault kind in the agent's Prometheus text.
fn injected(metrics: &str, kind: &str) -> u64 {
    let prefix = format!("droidfleet_agent_faults_injected_total{{kind=\"{kind}\"}} ");
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| panic!("no {kind} counter in:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resets_survive_delayed_duplicated_and_lost_messages() {
    let control_plane = Embedded::start().await;
    let address = control_plane.address.clone();
    let mut admin = control_plane.admin().await;
    let enrollment_token = admin.enrollment_token(DEVICES as u32, "").await;

    let faults: FaultConfig = "delay=0.2:40ms,duplicate=0.15,drop=0.06,disconnect=0.06"
        .parse()
        .unwrap();
    let kiosks = Kiosks::start(&address, enrollment_token, DEVICES, faults, 5).await;
    let (fleet, devices) = (&kiosks.fleet, &kiosks.devices);
    let enrolled = |name: &str| fleet.screen(name).unwrap().device_id;

    for (index, spec) in devices.iter().enumerate() {
        let id = enrolled(&spec.name).unwrap();
        let first = Passcode::new(format!("{:06}", 482_910 + index));
        fleet
            .set_passcode(&spec.name, Scope::Device, None, first)
            .await
            .unwrap();
        admin.wait_escrowed(&id, pb::CredentialScope::Device).await;
        admin
            .assign_policy(&id, pb::CredentialScope::Device, pin_policy(6))
            .await;
        let action = admin.reset(&id, pb::CredentialScope::Device).await.unwrap();
        let last = admin.wait_final(&action.action_id).await;
        assert_eq!(
            last.state,
            pb::ActionState::Done as i32,
            "{}: {last:?}",
            spec.name
        );
        let passcode = admin.reveal(&action.action_id).await.unwrap();
        let typed = fleet
            .enter_passcode(&spec.name, Scope::Device, Passcode::new(passcode))
            .await
            .unwrap();
        assert!(matches!(typed, EntryOutcome::Unlocked), "{typed}");
        let entered = admin.wait_entered(&action.action_id).await;
        assert!(entered.user_entered_at_ms > 0, "{entered:?}");
        let applied = fleet.screen(&spec.name).unwrap().applied_commands;
        assert_eq!(
            applied.get(&action.action_id),
            Some(&1),
            "{}: a duplicated or redelivered command is applied once",
            spec.name
        );
    }

    let metrics = fleet.metrics().render();
    for kind in ["delay", "duplicate", "drop", "disconnect"] {
        assert!(injected(&metrics, kind) > 0, "no {kind} fault was injected");
    }
    kiosks.stop().await;
    control_plane.stop().await;
}
