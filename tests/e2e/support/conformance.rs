//! What the conformance tests share: our agent as a device under test (one device, its state
//! file and its harness, pointed at any gateway), and running the kit's device suite on a
//! loopback listener.

use droidfleet_agent::device::{KdfParams, Ownership};
use droidfleet_agent::fleet::{DeviceSpec, Fleet, FleetConfig};
use droidfleet_tools::conformance::capabilities::HarnessCapability;
use droidfleet_tools::conformance::{
    Capabilities, DeviceSuiteOptions, Report, Selection, run_device_suite,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The device under test's name in its agent.
pub(crate) const DEVICE: &str = "under-test";

/// Our agent hosting one device against `gateway`, with its harness on loopback.
pub(crate) struct AgentUnderTest {
    /// `http://127.0.0.1:<port>` of its DeviceHarness.
    pub(crate) harness: String,
    stop: watch::Sender<bool>,
    fleet: tokio::task::JoinHandle<()>,
    served: tokio::task::JoinHandle<()>,
    /// Its state file, so a reboot keeps what was persisted.
    _state: tempfile::TempDir,
}

impl AgentUnderTest {
    pub(crate) async fn start(gateway: &str, enrollment_token: &str, ownership: Ownership) -> Self {
        let state = tempfile::tempdir().unwrap();
        let fleet = Fleet::load(FleetConfig {
            control_plane: gateway.to_string(),
            state_dir: Some(state.path().to_path_buf()),
            enrollment_token: Some(enrollment_token.to_string()),
            kdf: KdfParams::LIGHT,
            devices: vec![DeviceSpec {
                name: DEVICE.into(),
                ownership,
                build: droidfleet_agent::device::Build::default(),
            }],
            clock: Arc::new(droidfleet_agent::clock::SystemClock),
            connections: 1,
            faults: Default::default(),
        })
        .await
        .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let harness = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = watch::channel(false);
        let mut harness_stopped = stopped.clone();
        let served = tokio::spawn({
            let fleet = fleet.clone();
            async move {
                droidfleet_agent::harness::serve(fleet, listener, async move {
                    let _ = harness_stopped.wait_for(|s| *s).await;
                })
                .await
                .unwrap();
            }
        });
        let fleet = tokio::spawn(fleet.run(stopped));
        AgentUnderTest {
            harness,
            stop,
            fleet,
            served,
            _state: state,
        }
    }

    pub(crate) async fn stop(self) {
        let _ = self.stop.send(true);
        self.fleet.await.unwrap();
        self.served.await.unwrap();
    }
}

/// Our agent's capability statement, its harness at `harness`.
pub(crate) fn agent_capabilities(harness: &str) -> Capabilities {
    Capabilities {
        implementation: Some("droidfleet-agent".into()),
        remote_lock: true,
        cancel: true,
        harness: Some(HarnessCapability {
            address: harness.to_string(),
            device: DEVICE.into(),
        }),
        ..Capabilities::default()
    }
}

/// A loopback listener for the kit's gateway, and its URL.
pub(crate) async fn kit_listener() -> (tokio::net::TcpListener, String) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    (listener, url)
}

/// Runs the device suite on `listener` for a device that enrolls with `token`, printing each
/// case as it ends.
pub(crate) async fn device_suite(
    listener: tokio::net::TcpListener,
    token: &str,
    capabilities: Capabilities,
    selection: Selection,
) -> Report {
    let options = DeviceSuiteOptions {
        enrollment_token: token.to_string(),
        capabilities,
        selection,
        wait_for_device: Duration::from_secs(60),
    };
    let report = run_device_suite(options, listener, |_| {}).await.unwrap();
    println!("{}", report.console());
    report
}
