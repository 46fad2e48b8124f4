//! The device's `DeviceHarness`, through which the kit plays its user: reads the screen, types
//! passcodes, reboots it, reads and writes the user data a reset must keep. Every call goes in
//! the transcript, passcodes redacted.

use super::super::ConformanceError;
use super::super::capabilities::HarnessCapability;
use super::super::runner::{Outcome, fail};
use super::super::transcript::Transcript;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_harness_client::DeviceHarnessClient;
use tonic::transport::Channel;

/// A connected harness and the device's name in it.
pub(crate) struct Harness {
    client: DeviceHarnessClient<Channel>,
    name: String,
    transcript: Transcript,
}

impl Harness {
    pub(crate) async fn connect(
        capability: &HarnessCapability,
        transcript: &Transcript,
    ) -> Result<Harness, ConformanceError> {
        let client = DeviceHarnessClient::connect(capability.address.clone())
            .await
            .map_err(|source| ConformanceError::Harness {
                address: capability.address.clone(),
                source,
            })?;
        Ok(Harness {
            client,
            name: capability.device.clone(),
            transcript: transcript.clone(),
        })
    }

    fn note(&self, text: String) {
        self.transcript.record("kit → harness", text);
    }

    fn failed(&self, call: &str, status: tonic::Status) -> Outcome {
        fail(format!(
            "harness {call} failed: {:?}: {}",
            status.code(),
            status.message()
        ))
    }

    pub(crate) async fn screen(&mut self) -> Result<pb::Screen, Outcome> {
        self.note("GetScreen".into());
        let request = pb::DeviceRef {
            name: self.name.clone(),
        };
        match self.client.get_screen(request).await {
            Ok(screen) => Ok(screen.into_inner()),
            Err(status) => Err(self.failed("GetScreen", status)),
        }
    }

    pub(crate) async fn enter_passcode(
        &mut self,
        scope: pb::CredentialScope,
        passcode: &str,
    ) -> Result<pb::EnterPasscodeResponse, Outcome> {
        self.note(format!("EnterPasscode scope={scope:?} passcode=<redacted>"));
        let request = pb::EnterPasscodeRequest {
            name: self.name.clone(),
            scope: scope as i32,
            passcode: passcode.to_string(),
        };
        match self.client.enter_passcode(request).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.failed("EnterPasscode", status)),
        }
    }

    /// Sets a passcode as the user would in settings; `Err` carries the harness's status.
    pub(crate) async fn set_passcode(
        &mut self,
        scope: pb::CredentialScope,
        current: Option<&str>,
        new: &str,
    ) -> Result<pb::Screen, tonic::Status> {
        self.note(format!("SetPasscode scope={scope:?} passcode=<redacted>"));
        let request = pb::SetPasscodeRequest {
            name: self.name.clone(),
            scope: scope as i32,
            current_passcode: current.unwrap_or_default().to_string(),
            new_passcode: new.to_string(),
        };
        self.client
            .set_passcode(request)
            .await
            .map(tonic::Response::into_inner)
    }

    pub(crate) async fn reboot(&mut self) -> Result<pb::Screen, Outcome> {
        self.note("Reboot".into());
        let request = pb::DeviceRef {
            name: self.name.clone(),
        };
        match self.client.reboot(request).await {
            Ok(screen) => Ok(screen.into_inner()),
            Err(status) => Err(self.failed("Reboot", status)),
        }
    }

    pub(crate) async fn write_data(
        &mut self,
        scope: pb::CredentialScope,
        key: &str,
        value: &[u8],
    ) -> Result<(), Outcome> {
        self.note(format!("WriteUserData scope={scope:?} key={key:?}"));
        let request = pb::WriteUserDataRequest {
            name: self.name.clone(),
            scope: scope as i32,
            key: key.to_string(),
            value: value.to_vec(),
        };
        match self.client.write_user_data(request).await {
            Ok(_) => Ok(()),
            Err(status) => Err(self.failed("WriteUserData", status)),
        }
    }

    pub(crate) async fn read_data(
        &mut self,
        scope: pb::CredentialScope,
        key: &str,
    ) -> Result<Option<Vec<u8>>, Outcome> {
        self.note(format!("ReadUserData scope={scope:?} key={key:?}"));
        let request = pb::ReadUserDataRequest {
            name: self.name.clone(),
            scope: scope as i32,
            key: key.to_string(),
        };
        match self.client.read_user_data(request).await {
            Ok(response) => Ok(response.into_inner().value),
            Err(status) => Err(self.failed("ReadUserData", status)),
        }
    }
}
