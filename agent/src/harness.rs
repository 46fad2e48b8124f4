//! `droidfleet.v1.DeviceHarness`: a test plays each device's user through it.

use crate::convert::*;
use crate::device::{DeviceError, EnrollmentToken, EntryOutcome, Passcode, Refusal, Scope};
use crate::fleet::{Fleet, FleetError, Screen};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_harness_server::DeviceHarness;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub struct Harness {
    fleet: Arc<Fleet>,
}

impl Harness {
    pub fn new(fleet: Arc<Fleet>) -> Harness {
        Harness { fleet }
    }

    fn screen(&self, name: &str) -> Result<pb::Screen, Status> {
        Ok(screen_to_pb(&self.fleet.screen(name)?))
    }
}

impl From<FleetError> for Status {
    fn from(error: FleetError) -> Status {
        match &error {
            FleetError::UnknownDevice(_) => Status::not_found(error.to_string()),
            FleetError::Device { source, .. } => match source {
                DeviceError::StoreMissing(_) => Status::invalid_argument(error.to_string()),
                _ => Status::failed_precondition(error.to_string()),
            },
            _ => Status::internal(error.to_string()),
        }
    }
}

fn scope(value: i32) -> Result<Scope, Status> {
    scope_from_pb(value)
        .ok_or_else(|| Status::invalid_argument("scope: must be DEVICE or WORK_PROFILE"))
}

fn name(value: &str) -> Result<&str, Status> {
    if value.is_empty() {
        Err(Status::invalid_argument("name: must not be empty"))
    } else {
        Ok(value)
    }
}

/// ListDevices' page size when the request leaves it 0, and the largest page served.
const DEFAULT_PAGE_SIZE: usize = 1000;
const MAX_PAGE_SIZE: usize = 10_000;
/// Begins every ListDevices page token (then the name of the page's last device), so a token of
/// another list is refused instead of read as a name.
const PAGE_TOKEN_TAG: &str = "harness\0";

/// ListDevices' page size (AIP-158): 0 means the default, more than the maximum is clamped.
fn page_size(value: i32) -> Result<usize, Status> {
    match usize::try_from(value) {
        Err(_) => Err(Status::invalid_argument(format!(
            "page_size: must not be negative; 0 means the default of {DEFAULT_PAGE_SIZE}"
        ))),
        Ok(0) => Ok(DEFAULT_PAGE_SIZE),
        Ok(size) => Ok(size.min(MAX_PAGE_SIZE)),
    }
}

/// The device name a ListDevices page starts after; `None` for the first page.
fn page_start(token: &str) -> Result<Option<String>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    // Never echoed: the token may be anything the caller sent.
    let malformed = || {
        Status::invalid_argument(
            "page_token: is not a page token of ListDevices: send an earlier answer's \
             next_page_token unchanged, or none for the first page",
        )
    };
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| malformed())?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    match text.strip_prefix(PAGE_TOKEN_TAG) {
        Some(name) if !name.is_empty() => Ok(Some(name.to_string())),
        _ => Err(malformed()),
    }
}

fn page_token(last_name: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{PAGE_TOKEN_TAG}{last_name}"))
}

/// The refusal in words; while a throttle applies, also how long the user must wait, as a lock
/// screen counts down.
fn refusal_message(refusal: Refusal, now_ms: u64) -> String {
    let until_ms = match refusal {
        Refusal::Throttled { until_ms } => until_ms,
        Refusal::WrongPasscode {
            throttled_until_ms, ..
        } => throttled_until_ms,
        Refusal::Wiped => 0,
    };
    if until_ms > now_ms {
        format!("{refusal} (in {} s)", (until_ms - now_ms).div_ceil(1000))
    } else {
        refusal.to_string()
    }
}

pub(crate) fn screen_to_pb(screen: &Screen) -> pb::Screen {
    pb::Screen {
        name: screen.name.clone(),
        device_id: screen.device_id.clone().unwrap_or_default(),
        ownership: ownership_to_pb(screen.ownership) as i32,
        stores: screen.stores.iter().map(store_status_to_pb).collect(),
        notifications: screen
            .notifications
            .iter()
            .map(notification_to_pb)
            .collect(),
        connected: screen.connected,
        applied_commands: screen
            .applied_commands
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        policies: screen
            .policies
            .iter()
            .map(|(scope, policy)| pb::StorePolicy {
                scope: scope_to_pb(*scope) as i32,
                policy: Some(policy_to_pb(policy)),
            })
            .collect(),
        api_level: screen.build.api_level.get(),
        maker_profile: screen.build.profile.name().to_string(),
        lock_screen_prompts: screen
            .lock_screen_prompts
            .iter()
            .map(|prompt| pb::LockScreenPrompt {
                scope: scope_to_pb(prompt.scope) as i32,
                message: prompt.message.clone(),
            })
            .collect(),
        re_enrollment_required: screen.re_enrollment_required,
    }
}

type ScreenStream = Pin<Box<dyn Stream<Item = Result<pb::Screen, Status>> + Send>>;

#[tonic::async_trait]
impl DeviceHarness for Harness {
    async fn list_devices(
        &self,
        request: Request<pb::HarnessListDevicesRequest>,
    ) -> Result<Response<pb::HarnessListDevicesResponse>, Status> {
        let request = request.into_inner();
        let size = page_size(request.page_size)?;
        let after = page_start(&request.page_token)?;
        // One past the page tells whether another follows.
        let mut names: Vec<&str> = self
            .fleet
            .names_after(after.as_deref())
            .take(size + 1)
            .collect();
        let next_page_token = if names.len() > size {
            names.truncate(size);
            names
                .last()
                .map(|name| page_token(name))
                .unwrap_or_default()
        } else {
            String::new()
        };
        let devices = names
            .into_iter()
            .map(|name| {
                let screen = self.fleet.screen(name)?;
                Ok(pb::HarnessDevice {
                    name: screen.name,
                    ownership: ownership_to_pb(screen.ownership) as i32,
                    device_id: screen.device_id.unwrap_or_default(),
                    api_level: screen.build.api_level.get(),
                    maker_profile: screen.build.profile.name().to_string(),
                })
            })
            .collect::<Result<_, FleetError>>()?;
        Ok(Response::new(pb::HarnessListDevicesResponse {
            devices,
            next_page_token,
        }))
    }

    async fn get_screen(
        &self,
        request: Request<pb::DeviceRef>,
    ) -> Result<Response<pb::Screen>, Status> {
        Ok(Response::new(self.screen(name(&request.get_ref().name)?)?))
    }

    async fn enter_passcode(
        &self,
        request: Request<pb::EnterPasscodeRequest>,
    ) -> Result<Response<pb::EnterPasscodeResponse>, Status> {
        let request = request.into_inner();
        let device = name(&request.name)?;
        let outcome = self
            .fleet
            .enter_passcode(
                device,
                scope(request.scope)?,
                Passcode::new(request.passcode),
            )
            .await?;
        let (unlocked, message, retry_at_ms) = match outcome {
            EntryOutcome::Unlocked => (true, "unlocked".to_string(), 0),
            EntryOutcome::Refused(refusal) => {
                let retry_at_ms = match refusal {
                    Refusal::WrongPasscode {
                        throttled_until_ms, ..
                    } => throttled_until_ms,
                    Refusal::Throttled { until_ms } => until_ms,
                    Refusal::Wiped => 0,
                };
                (
                    false,
                    refusal_message(refusal, self.fleet.now_ms()),
                    retry_at_ms,
                )
            }
        };
        Ok(Response::new(pb::EnterPasscodeResponse {
            unlocked,
            message,
            screen: Some(self.screen(device)?),
            retry_at_ms,
        }))
    }

    async fn set_passcode(
        &self,
        request: Request<pb::SetPasscodeRequest>,
    ) -> Result<Response<pb::Screen>, Status> {
        let request = request.into_inner();
        let device = name(&request.name)?;
        let current =
            (!request.current_passcode.is_empty()).then(|| Passcode::new(request.current_passcode));
        self.fleet
            .set_passcode(
                device,
                scope(request.scope)?,
                current,
                Passcode::new(request.new_passcode),
            )
            .await?;
        Ok(Response::new(self.screen(device)?))
    }

    async fn lock(&self, request: Request<pb::StoreRef>) -> Result<Response<pb::Screen>, Status> {
        let request = request.into_inner();
        let device = name(&request.name)?;
        self.fleet.lock(device, scope(request.scope)?).await?;
        Ok(Response::new(self.screen(device)?))
    }

    async fn write_user_data(
        &self,
        request: Request<pb::WriteUserDataRequest>,
    ) -> Result<Response<pb::WriteUserDataResponse>, Status> {
        let request = request.into_inner();
        if request.key.is_empty() || request.key.len() > 256 {
            return Err(Status::invalid_argument("key: must be 1 to 256 bytes"));
        }
        if request.value.len() > 1024 * 1024 {
            return Err(Status::invalid_argument("value: must be at most 1 MiB"));
        }
        self.fleet
            .write_user_data(
                name(&request.name)?,
                scope(request.scope)?,
                request.key,
                request.value,
            )
            .await?;
        Ok(Response::new(pb::WriteUserDataResponse {}))
    }

    async fn read_user_data(
        &self,
        request: Request<pb::ReadUserDataRequest>,
    ) -> Result<Response<pb::ReadUserDataResponse>, Status> {
        let request = request.into_inner();
        let value =
            self.fleet
                .read_user_data(name(&request.name)?, scope(request.scope)?, &request.key)?;
        Ok(Response::new(pb::ReadUserDataResponse { value }))
    }

    async fn reboot(
        &self,
        request: Request<pb::DeviceRef>,
    ) -> Result<Response<pb::Screen>, Status> {
        let device = name(&request.get_ref().name)?.to_string();
        self.fleet.reboot(&device).await?;
        Ok(Response::new(self.screen(&device)?))
    }

    async fn set_online(
        &self,
        request: Request<pb::SetOnlineRequest>,
    ) -> Result<Response<pb::Screen>, Status> {
        let request = request.into_inner();
        let device = name(&request.name)?;
        self.fleet.set_online(device, request.online).await?;
        Ok(Response::new(self.screen(device)?))
    }

    async fn open_work_app(
        &self,
        request: Request<pb::DeviceRef>,
    ) -> Result<Response<pb::Screen>, Status> {
        let device = name(&request.get_ref().name)?.to_string();
        self.fleet.open_work_app(&device).await?;
        Ok(Response::new(self.screen(&device)?))
    }

    async fn re_enroll(
        &self,
        request: Request<pb::ReEnrollRequest>,
    ) -> Result<Response<pb::Screen>, Status> {
        let request = request.into_inner();
        let device = name(&request.name)?;
        if request.enrollment_token.is_empty() {
            return Err(Status::invalid_argument(
                "enrollment_token: must not be empty; give the token ReEnrollDevice returned",
            ));
        }
        self.fleet
            .hand_re_enrollment_token(device, EnrollmentToken::new(request.enrollment_token))?;
        Ok(Response::new(self.screen(device)?))
    }

    type WatchScreensStream = ScreenStream;

    async fn watch_screens(
        &self,
        request: Request<pb::WatchScreensRequest>,
    ) -> Result<Response<Self::WatchScreensStream>, Status> {
        let only = request.into_inner().name;
        let names: Vec<String> = if only.is_empty() {
            self.fleet.names().map(str::to_string).collect()
        } else {
            self.fleet.screen(&only)?;
            vec![only.clone()]
        };
        let mut changes = self.fleet.screen_changes();
        let fleet = self.fleet.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            for name in &names {
                let Ok(screen) = fleet.screen(name) else {
                    continue;
                };
                if tx.send(Ok(screen_to_pb(&screen))).await.is_err() {
                    return;
                }
            }
            loop {
                let screens = match changes.recv().await {
                    Ok(screen) => {
                        if !only.is_empty() && screen.name != only {
                            continue;
                        }
                        vec![screen_to_pb(&screen)]
                    }
                    // Screens were missed: catch up with the present, so a watcher waiting for
                    // a state the device is already in still sees it.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => names
                        .iter()
                        .filter_map(|name| fleet.screen(name).ok())
                        .map(|screen| screen_to_pb(&screen))
                        .collect(),
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                };
                for screen in screens {
                    if tx.send(Ok(screen)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// Serves the harness on `listener` until `shutdown` resolves.
pub async fn serve(
    fleet: Arc<Fleet>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        // Harness calls are small request/response pairs; Nagle's algorithm would add ~40 ms
        // to each.
        .tcp_nodelay(true)
        .add_service(
            droidfleet_proto::v1::device_harness_server::DeviceHarnessServer::new(Harness::new(
                fleet,
            )),
        )
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttled_refusal_says_when_and_how_long() {
        let until_ms = 1_700_000_030_000;
        assert_eq!(
            refusal_message(Refusal::Throttled { until_ms }, until_ms - 29_001),
            format!(
                "too many failed attempts; try again at {until_ms} ms since the epoch (in 30 s)"
            )
        );
        let fifth = Refusal::WrongPasscode {
            failed_attempts: 5,
            throttled_until_ms: until_ms,
        };
        assert_eq!(
            refusal_message(fifth, until_ms - 30_000),
            format!(
                "wrong passcode (5 failed attempts); try again at {until_ms} ms since the epoch \
                 (in 30 s)"
            )
        );
        // Once the time has come, no countdown.
        assert!(!refusal_message(fifth, until_ms).contains("(in"));
        let wrong = Refusal::WrongPasscode {
            failed_attempts: 1,
            throttled_until_ms: 0,
        };
        assert_eq!(
            refusal_message(wrong, until_ms),
            "wrong passcode (1 failed attempt)"
        );
        assert_eq!(
            refusal_message(Refusal::Wiped, until_ms),
            "the store was wiped after too many failed attempts"
        );
    }
}
