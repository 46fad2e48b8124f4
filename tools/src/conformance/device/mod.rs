//! The device suite: the kit plays the control plane, a device under test (any implementation)
//! enrolls with it and keeps its session, and the cases send it signed commands (genuine,
//! forged, replayed, expired, out of sequence, for another device) and judge what it reports.
//! Where the device serves `DeviceHarness`, the kit also plays its user.
//!
//! Layout: this file is the suite's context (the device as the kit sees it, sending commands,
//! reading the device's messages in order); `gateway.rs` the kit's `DeviceGateway`;
//! `commands.rs` the signed commands the kit builds; `harness.rs` the harness client;
//! `cases_commands.rs`, `cases_policy.rs` and `cases_reset.rs` the cases, listed in [`cases`].

mod cases_commands;
mod cases_keys;
mod cases_policy;
mod cases_reset;
mod commands;
mod gateway;
mod harness;

use super::ConformanceError;
use super::capabilities::Capabilities;
use super::catalogue::{Need, Suite};
use super::report::Report;
use super::runner::{self, Case, Outcome, SuiteContext, fail, within};
use super::select::Selection;
use super::transcript::{self, Transcript};
use commands::SentCommand;
use droidfleet_proto::v1 as pb;
use gateway::{Event, KitGateway, Shared};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tonic::Status;

/// How long the kit waits for any one thing the device should do (a reply, a reconnect).
const WAIT: Duration = Duration::from_secs(10);

/// What a device-suite run is given.
#[derive(Clone, Debug)]
pub struct DeviceSuiteOptions {
    /// The token the device must enroll with (shown to the user, never reported).
    pub enrollment_token: String,
    pub capabilities: Capabilities,
    pub selection: Selection,
    /// How long to wait for the device to enroll and open its first session.
    pub wait_for_device: Duration,
}

/// Every case of the device suite, in the order a run takes them.
pub(crate) fn cases() -> impl Iterator<Item = &'static Case<DeviceCtx>> {
    cases_commands::CASES
        .iter()
        .chain(cases_policy::CASES)
        .chain(cases_keys::CASES)
        .chain(cases_reset::CASES)
}

/// Serves the kit's gateway on `listener`, waits for the device under test to enroll and
/// connect, runs the selected cases and returns the report. `each` sees every case as it ends.
pub async fn run_device_suite(
    options: DeviceSuiteOptions,
    listener: tokio::net::TcpListener,
    each: impl FnMut(&super::report::CaseReport),
) -> Result<Report, ConformanceError> {
    let catalogue: Vec<_> = cases().map(|c| c.info).collect();
    let selected = options.selection.apply(&catalogue)?;
    let address = listener
        .local_addr()
        .map_err(|source| ConformanceError::Listen { source })?;
    droidfleet_proto::tls::check_plaintext_address(address)?;
    let transcript = Transcript::default();
    let (shared, events) = Shared::new(options.enrollment_token.clone(), transcript.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(
                droidfleet_proto::v1::device_gateway_server::DeviceGatewayServer::new(KitGateway {
                    shared: shared.clone(),
                }),
            )
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    let started_at_ms = now_ms();
    let started = Instant::now();
    let mut context = DeviceCtx::new(shared, events, options.capabilities.clone(), transcript);
    let outcome = async {
        context.wait_for_device(options.wait_for_device).await?;
        if let Some(harness) = &options.capabilities.harness {
            context.harness = Some(harness::Harness::connect(harness, &context.transcript).await?);
        }
        Ok::<_, ConformanceError>(runner::run_cases(&mut context, cases(), &selected, each).await)
    }
    .await;
    // Ends the device's session, so the server can stop: the device will try to reconnect to a
    // kit that is gone, as it would to any control plane that went away.
    context.close().await;
    drop(context);
    let _ = stop.send(());
    let mut server = server;
    if tokio::time::timeout(Duration::from_secs(5), &mut server)
        .await
        .is_err()
    {
        server.abort();
    }
    let cases = outcome?;
    Ok(Report {
        suite: Suite::Device,
        implementation: options
            .capabilities
            .implementation
            .clone()
            .unwrap_or_else(|| "the device under test".into()),
        target: format!("devices connecting to {address}"),
        started_at_ms,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        cases,
    })
}

/// The device under test as the kit sees it, and the kit's side of its session.
pub(crate) struct DeviceCtx {
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Event>,
    capabilities: Capabilities,
    transcript: Transcript,
    harness: Option<harness::Harness>,
    /// The open session: its number and the sender to the device.
    session: Option<(u64, mpsc::Sender<Result<pb::ControlMessage, Status>>)>,
    /// What the device has said, folded: statuses, escrows, Hellos, enrollments.
    view: View,
    /// Messages read from the device but not yet consumed by a case.
    unread: VecDeque<pb::DeviceMessage>,
    /// The next command's sequence number (the device enrolled with this kit run: from 1).
    next_sequence: u64,
    next_command: u64,
    /// The passcode the kit knows each store to have (it set it), by `CredentialScope` value.
    passcodes: BTreeMap<i32, String>,
    /// The last reset the device applied, with its result, for the cases that follow it.
    last_reset: Option<(SentCommand, pb::CommandResult)>,
    /// A key that is not the kit's, for forgeries.
    forger: ring::signature::Ed25519KeyPair,
}

/// What the device has reported so far.
#[derive(Debug, Default)]
pub(crate) struct View {
    pub(crate) enroll_requests: Vec<pb::EnrollRequest>,
    /// The latest status of each store, by `CredentialScope` value.
    pub(crate) stores: BTreeMap<i32, pb::StoreStatus>,
    /// The latest escrowed token of each store.
    pub(crate) escrows: BTreeMap<i32, Vec<u8>>,
    /// Every message of each session, by session number, in order.
    pub(crate) sessions: BTreeMap<u64, Vec<pb::DeviceMessage>>,
    /// When each session attempt arrived and whether the kit turned it away.
    pub(crate) attempts: Vec<(Instant, bool)>,
    /// When the kit last ended a session on purpose.
    pub(crate) ended_by_kit: Option<Instant>,
}

impl SuiteContext for DeviceCtx {
    fn transcript(&self) -> &Transcript {
        &self.transcript
    }

    fn unmet(&self, need: Need) -> Option<String> {
        match need {
            Need::WorkProfile => (self.ownership() != pb::Ownership::Unspecified
                && gateway::stores_of(self.ownership()).len() < 2)
                .then(|| "the device enrolled without a work profile".into()),
            need => (!self.capabilities.declares(need)).then(|| {
                format!(
                    "the capability statement does not declare {}",
                    need.as_str()
                )
            }),
        }
    }
}

impl DeviceCtx {
    fn new(
        shared: Arc<Shared>,
        events: mpsc::UnboundedReceiver<Event>,
        capabilities: Capabilities,
        transcript: Transcript,
    ) -> DeviceCtx {
        DeviceCtx {
            shared,
            events,
            capabilities,
            transcript,
            harness: None,
            session: None,
            view: View::default(),
            unread: VecDeque::new(),
            next_sequence: 1,
            next_command: 1,
            passcodes: BTreeMap::new(),
            last_reset: None,
            forger: {
                let rng = ring::rand::SystemRandom::new();
                let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng)
                    .expect("the system RNG works");
                ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                    .expect("a key just generated parses")
            },
        }
    }

    async fn wait_for_device(&mut self, wait: Duration) -> Result<(), ConformanceError> {
        let deadline = tokio::time::Instant::now() + wait;
        // Until the device has opened a session and said something on it (normally its Hello).
        while self.session.is_none() || self.view.sessions.is_empty() {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.absorb(event),
                Ok(None) | Err(_) => {
                    return Err(ConformanceError::NoDevice {
                        waited_s: wait.as_secs(),
                        enrolled: !self.view.enroll_requests.is_empty(),
                    });
                }
            }
        }
        self.set_default_policies();
        Ok(())
    }

    /// Folds an event into the view; a message is also queued for the cases.
    fn absorb(&mut self, event: Event) {
        match event {
            Event::Enrolled(request) => self.view.enroll_requests.push(request),
            Event::SessionAttempt { at, refused } => self.view.attempts.push((at, refused)),
            Event::Opened { session, tx } => self.session = Some((session, tx)),
            Event::Ended { session, error } => {
                if self
                    .session
                    .as_ref()
                    .is_some_and(|(open, _)| *open == session)
                {
                    self.session = None;
                }
                self.transcript.record(
                    "kit",
                    format!(
                        "session {session} ended by the device{}",
                        error
                            .map(|e| format!(": {}", e.message()))
                            .unwrap_or_default()
                    ),
                );
            }
            Event::Message { session, message } => {
                self.view
                    .sessions
                    .entry(session)
                    .or_default()
                    .push(message.clone());
                use pb::device_message::Body;
                match &message.body {
                    Some(Body::Hello(hello)) => {
                        for store in hello.status.iter().flat_map(|s| &s.stores) {
                            self.view.stores.insert(store.scope, store.clone());
                        }
                    }
                    Some(Body::Status(status)) => {
                        for store in &status.stores {
                            self.view.stores.insert(store.scope, store.clone());
                        }
                    }
                    Some(Body::EscrowToken(update)) => {
                        self.view.escrows.insert(update.scope, update.token.clone());
                    }
                    _ => {}
                }
                self.unread.push_back(message);
            }
        }
    }

    /// The kit's policies: a numeric-complex PIN of 6 for the device store, an alphanumeric
    /// password of 8 for the work profile; sent on every session, and now on the open one.
    fn set_default_policies(&mut self) {
        let defaults = gateway::stores_of(self.ownership())
            .into_iter()
            .map(|scope| (scope as i32, Some(commands::default_policy(scope))))
            .collect();
        let mut state = self.shared.state();
        state.policies = defaults;
        // New policies, so a new version: at the old one the device would refuse them.
        state.policy_version += 1;
    }

    /// The open session's number.
    pub(crate) fn session_number(&self) -> Option<u64> {
        self.session.as_ref().map(|(number, _)| *number)
    }

    pub(crate) fn ownership(&self) -> pb::Ownership {
        self.shared
            .state()
            .enrolled
            .as_ref()
            .map(|e| e.ownership)
            .unwrap_or(pb::Ownership::Unspecified)
    }

    pub(crate) fn device_id(&self) -> String {
        self.shared
            .state()
            .enrolled
            .as_ref()
            .map(|e| e.device_id.clone())
            .unwrap_or_default()
    }

    /// The store a reset targets for the device's enrollment type.
    pub(crate) fn reset_scope(&self) -> pb::CredentialScope {
        match self.ownership() {
            pb::Ownership::Cosu | pb::Ownership::Aosp => pb::CredentialScope::Device,
            _ => pb::CredentialScope::WorkProfile,
        }
    }

    pub(crate) fn store(&self, scope: pb::CredentialScope) -> Option<pb::StoreStatus> {
        self.view.stores.get(&(scope as i32)).cloned()
    }

    pub(crate) fn escrowed(&self, scope: pb::CredentialScope) -> Option<Vec<u8>> {
        self.view.escrows.get(&(scope as i32)).cloned()
    }

    /// Sends a message on the open session, waiting (bounded) for the device to reconnect
    /// when it has none.
    pub(crate) async fn send(&mut self, message: pb::ControlMessage) -> Result<(), Outcome> {
        let tx = self.open_session().await?;
        self.transcript
            .record("kit → device", transcript::control_message(&message));
        tx.send(Ok(message))
            .await
            .map_err(|_| fail("the device's session closed while the kit was sending"))
    }

    /// The open session's sender, after waiting for one if the device is reconnecting.
    pub(crate) async fn open_session(
        &mut self,
    ) -> Result<mpsc::Sender<Result<pb::ControlMessage, Status>>, Outcome> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some((_, tx)) = &self.session
                && !tx.is_closed()
            {
                return Ok(tx.clone());
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.absorb(event),
                Ok(None) => return Err(fail("the kit's gateway stopped")),
                Err(_) => {
                    return Err(fail(format!(
                        "the device has no session open and opened none within {} s",
                        WAIT.as_secs()
                    )));
                }
            }
        }
    }

    /// The next message from the device, in order, within [`WAIT`].
    pub(crate) async fn next_message(&mut self, what: &str) -> Result<pb::DeviceMessage, Outcome> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(message) = self.unread.pop_front() {
                return Ok(message);
            }
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(event)) => self.absorb(event),
                Ok(None) => return Err(fail("the kit's gateway stopped")),
                Err(_) => {
                    return Err(fail(format!(
                        "timed out after {} s waiting for {what}",
                        WAIT.as_secs()
                    )));
                }
            }
        }
    }

    /// Reads the device's messages up to the `CommandResult` for `command_id`; returns the
    /// messages before it (in order) and the result. Checks the result's fields (DEV-RESULT-1).
    pub(crate) async fn answer(
        &mut self,
        command_id: &str,
    ) -> Result<(Vec<pb::DeviceMessage>, pb::CommandResult), Outcome> {
        let mut before = Vec::new();
        loop {
            let message = self
                .next_message(&format!("the CommandResult of {command_id:?}"))
                .await?;
            if let Some(pb::device_message::Body::Result(result)) = &message.body
                && result.command_id == command_id
            {
                check_result(result)?;
                return Ok((before, result.clone()));
            }
            before.push(message);
        }
    }

    /// Sends a command and reads its answer, checking the acknowledgement rules (DEV-ACK-1):
    /// exactly one `CommandAck` before the result when `acked`, none when not.
    pub(crate) async fn exchange(
        &mut self,
        command: &SentCommand,
        acked: bool,
    ) -> Result<(Vec<pb::DeviceMessage>, pb::CommandResult), Outcome> {
        self.send(command.message()).await?;
        let (before, result) = self.answer(&command.id).await?;
        let acks = before.iter().filter(|m| is_ack(m, &command.id)).count();
        if acked {
            let first_about = before.iter().find(|m| names(m, &command.id));
            runner::ensure!(
                acks == 1 && first_about.is_some_and(|m| is_ack(m, &command.id)),
                "expected one CommandAck for {:?} before anything else about it and before its \
                 result (DEV-ACK-1); saw {acks} ack(s) before the result",
                command.id
            );
        } else {
            runner::ensure!(
                acks == 0,
                "acknowledged {:?}, a command it must refuse without an ack (DEV-ACK-1)",
                command.id
            );
        }
        Ok((before, result))
    }

    /// A barrier: sends an expired, harmless command and reads up to its result, returning
    /// everything the device sent before it. Since a device handles messages in order
    /// (DEV-CMD-8), whatever it does about earlier messages comes before this answer.
    pub(crate) async fn barrier(&mut self) -> Result<Vec<pb::DeviceMessage>, Outcome> {
        let probe = self.probe();
        let (before, result) = self.exchange(&probe, true).await?;
        runner::ensure!(
            result.error_code == pb::ErrorCode::Expired as i32,
            "an expired command (not_after_ms 1) was answered {} instead of EXPIRED (DEV-CMD-6)",
            transcript::error_code(result.error_code)
        );
        Ok(before
            .into_iter()
            .filter(|m| !is_ack(m, &probe.id))
            .collect())
    }

    /// Ends the open session at the end of a run, and turns away the device's reconnections.
    async fn close(&mut self) {
        self.shared.state().refuse_sessions = u32::MAX;
        if let Some((_, tx)) = self.session.take() {
            let _ = tx
                .send(Err(Status::unavailable("the conformance run is over")))
                .await;
        }
    }

    /// Ends the open session from the kit's side with UNAVAILABLE.
    pub(crate) async fn end_session(&mut self) -> Result<(), Outcome> {
        let tx = self.open_session().await?;
        self.transcript
            .record("kit", "ends the session (UNAVAILABLE) on purpose");
        self.view.ended_by_kit = Some(Instant::now());
        self.session = None;
        let _ = tx
            .send(Err(Status::unavailable(
                "the conformance kit ends this session on purpose",
            )))
            .await;
        Ok(())
    }

    /// The next event of any kind (for the reconnect case), within [`WAIT`].
    pub(crate) async fn next_event_attempt(&mut self) -> Result<(Instant, bool), Outcome> {
        let seen = self.view.attempts.len();
        within(WAIT, "the device's next session attempt", async {
            while self.view.attempts.len() == seen {
                match self.events.recv().await {
                    Some(event) => self.absorb(event),
                    None => break,
                }
            }
        })
        .await?;
        self.view
            .attempts
            .get(seen)
            .copied()
            .ok_or_else(|| fail("the kit's gateway stopped"))
    }

    /// Sends `policy` for `scope`, signed at a new version, and makes it the policy of later
    /// sessions too.
    pub(crate) async fn send_policy(
        &mut self,
        scope: pb::CredentialScope,
        policy: Option<pb::PasscodePolicy>,
    ) -> Result<(), Outcome> {
        let version = {
            let mut state = self.shared.state();
            state.policies.insert(scope as i32, policy);
            state.policy_version += 1;
            state.policy_version
        };
        let signed = self.signed_policy(scope, policy, version);
        self.send(commands::policy_message(signed)).await
    }

    /// `policy` for this device's `scope` at `version`, signed with the kit's key.
    pub(crate) fn signed_policy(
        &self,
        scope: pb::CredentialScope,
        policy: Option<pb::PasscodePolicy>,
        version: u64,
    ) -> pb::SignedPolicy {
        commands::signed_policy(
            &self.shared.key,
            &self.device_id(),
            scope as i32,
            policy,
            version,
        )
    }

    /// The version and policy the kit last gave `scope`.
    pub(crate) fn current_policy(
        &self,
        scope: pb::CredentialScope,
    ) -> (u64, Option<pb::PasscodePolicy>) {
        let state = self.shared.state();
        let policy = state.policies.get(&(scope as i32)).cloned().flatten();
        (state.policy_version, policy)
    }

    /// A command body for this device with the next id and sequence, valid for ten minutes.
    pub(crate) fn body(&mut self, kind: pb::command_body::Kind) -> pb::CommandBody {
        let id = format!("kit-command-{}", self.next_command);
        self.next_command += 1;
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        pb::CommandBody {
            command_id: id,
            device_id: self.device_id(),
            sequence,
            not_after_ms: now_ms() + 600_000,
            kind: Some(kind),
            traceparent: String::new(),
        }
    }

    /// Takes the next sequence number, for a body the case builds itself.
    pub(crate) fn take_sequence(&mut self) -> u64 {
        let sequence = self.next_sequence;
        self.next_sequence += 1;
        sequence
    }

    /// Signs `body` with the kit's key, as a control plane would.
    pub(crate) fn sign(&self, body: &pb::CommandBody) -> SentCommand {
        SentCommand::signed(body, &self.shared.key)
    }

    /// An expired reset with a wrong token: every conforming device refuses it EXPIRED and
    /// nothing changes, whatever state it is in.
    pub(crate) fn probe(&mut self) -> SentCommand {
        let scope = self.reset_scope();
        let mut body = self.body(commands::reset(scope, "860273", vec![0x55; 32]));
        body.not_after_ms = 1;
        self.sign(&body)
    }

    /// A reset of the reset store with `passcode` and `token`.
    pub(crate) fn reset_command(&mut self, passcode: &str, token: Vec<u8>) -> SentCommand {
        let scope = self.reset_scope();
        self.transcript.secret(passcode);
        let body = self.body(commands::reset(scope, passcode, token));
        self.sign(&body)
    }
}

/// DEV-RESULT-1: a result says one consistent thing, with the device's time.
fn check_result(result: &pb::CommandResult) -> Result<(), Outcome> {
    runner::ensure!(
        result.completed_at_ms != 0,
        "the CommandResult of {:?} has completed_at_ms 0 (DEV-RESULT-1)",
        result.command_id
    );
    if result.success {
        runner::ensure!(
            result.error_code == 0,
            "the CommandResult of {:?} says success with error code {} (DEV-RESULT-1)",
            result.command_id,
            transcript::error_code(result.error_code)
        );
    } else {
        runner::ensure!(
            result.error_code >= 10 && pb::ErrorCode::try_from(result.error_code).is_ok(),
            "the CommandResult of {:?} says failure with error code {}, not a device's code \
             (DEV-RESULT-1)",
            result.command_id,
            transcript::error_code(result.error_code)
        );
    }
    runner::ensure!(
        result.reason.len() <= 1024,
        "the CommandResult of {:?} has a reason of {} bytes, above 1024 (DEV-RESULT-1)",
        result.command_id,
        result.reason.len()
    );
    Ok(())
}

/// Whether `message` is about command `command_id` (an ack, a result or a user event).
fn names(message: &pb::DeviceMessage, command_id: &str) -> bool {
    use pb::device_message::Body;
    match &message.body {
        Some(Body::Ack(ack)) => ack.command_id == command_id,
        Some(Body::Result(result)) => result.command_id == command_id,
        Some(Body::UserEvent(event)) => event.command_id == command_id,
        _ => false,
    }
}

pub(crate) fn is_ack(message: &pb::DeviceMessage, command_id: &str) -> bool {
    matches!(&message.body, Some(pb::device_message::Body::Ack(ack)) if ack.command_id == command_id)
}

/// A fresh enrollment token for the device under test.
pub fn random_enrollment_token() -> String {
    gateway::random_text()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
