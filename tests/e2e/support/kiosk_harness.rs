//! The device harness of a `droidfleet agent run` child process, for the tests whose one device is
//! named `kiosk`: connect to it, wait for the kiosk to be connected, set its first passcode, type
//! a passcode.

use super::{DEADLINE, Process};
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_harness_client::DeviceHarnessClient;
use tonic::transport::Channel;

pub(crate) async fn harness(agent: &Process) -> DeviceHarnessClient<Channel> {
    DeviceHarnessClient::connect(format!("http://{}", agent.address))
        .await
        .unwrap()
}

/// Waits until the kiosk's screen says it is connected.
pub(crate) async fn wait_connected(harness: &mut DeviceHarnessClient<Channel>) -> pb::Screen {
    let mut stream = harness
        .watch_screens(pb::WatchScreensRequest {
            name: "kiosk".into(),
        })
        .await
        .unwrap()
        .into_inner();
    tokio::time::timeout(DEADLINE, async {
        while let Some(screen) = stream.message().await.unwrap() {
            if screen.connected {
                return screen;
            }
        }
        panic!("WatchScreens ended")
    })
    .await
    .expect("the device connects in time")
}

/// Types `passcode` on the kiosk's device store; whether it unlocked.
pub(crate) async fn enter(harness: &mut DeviceHarnessClient<Channel>, passcode: &str) -> bool {
    harness
        .enter_passcode(pb::EnterPasscodeRequest {
            name: "kiosk".into(),
            scope: pb::CredentialScope::Device as i32,
            passcode: passcode.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .unlocked
}

/// Sets the kiosk's device-store passcode where it had none, as its user would.
pub(crate) async fn set_first_passcode(harness: &mut DeviceHarnessClient<Channel>, passcode: &str) {
    harness
        .set_passcode(pb::SetPasscodeRequest {
            name: "kiosk".into(),
            scope: pb::CredentialScope::Device as i32,
            current_passcode: String::new(),
            new_passcode: passcode.into(),
        })
        .await
        .unwrap();
}
