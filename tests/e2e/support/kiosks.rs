//! A fleet of COSU kiosks hosted in the test's own process, with message faults injected, run
//! until stopped: what the fault and cancel/expiry tests drive.

use super::DEADLINE;
use droidfleet_agent::device::KdfParams;
use droidfleet_agent::faults::FaultConfig;
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig};
use std::sync::Arc;

pub(crate) struct Kiosks {
    pub(crate) fleet: Arc<Fleet>,
    /// `kiosk-0` to `kiosk-<n-1>`, in order.
    pub(crate) devices: Vec<DeviceSpec>,
    stop: tokio::sync::watch::Sender<bool>,
    agent: tokio::task::JoinHandle<()>,
}

impl Kiosks {
    /// Enrolls `count` kiosks with `enrollment_token` against `control_plane` over two
    /// connections, with `faults` (seeded by `seed`) on every session, and returns once every
    /// device enrolled.
    pub(crate) async fn start(
        control_plane: &str,
        enrollment_token: String,
        count: usize,
        faults: FaultConfig,
        seed: u64,
    ) -> Kiosks {
        let devices: Vec<DeviceSpec> = (0..count)
            .map(|i| format!("cosu:kiosk-{i}").parse().unwrap())
            .collect();
        let fleet = Fleet::load(FleetConfig {
            control_plane: control_plane.to_string(),
            state_dir: None,
            enrollment_token: Some(enrollment_token),
            kdf: KdfParams::LIGHT,
            devices: devices.clone(),
            clock: Arc::new(droidfleet_agent::clock::SystemClock),
            connections: 2,
            faults: faults.with_seed(seed),
        })
        .await
        .unwrap();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let agent = tokio::spawn(fleet.clone().run(stopped));
        let mut changes = fleet.screen_changes();
        let enrolled = |name: &str| fleet.screen(name).unwrap().device_id;
        tokio::time::timeout(DEADLINE, async {
            while devices.iter().any(|d| enrolled(&d.name).is_none()) {
                let _ = changes.recv().await;
            }
        })
        .await
        .expect("every device enrolls despite the injected faults");
        Kiosks {
            fleet,
            devices,
            stop,
            agent,
        }
    }

    /// Ends every session and waits for the fleet to stop.
    pub(crate) async fn stop(self) {
        self.stop.send(true).unwrap();
        self.agent.await.unwrap();
    }
}
