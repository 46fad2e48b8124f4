//! The crash test, with real processes: `droidfleet serve` and one `droidfleet agent run`
//! hosting 2,000 devices; 2,000 passcode resets requested at full speed (many requests in
//! flight); the control plane killed with SIGKILL three times at points drawn from a seeded
//! generator (after a number of observed events: resets requested plus actions final) and
//! restarted on the same port. At the end every action an admin saw created exists, every action
//! is final and the devices, which count how often each command took effect, show none applied
//! twice and none lost: an action is `done` exactly when its device applied it once. A `done`
//! reset also proves the device's acknowledged escrow survived the kills: the control plane sent
//! the reset with that token, and the agent escrows again only what was not acknowledged.
//!
//! `DROIDFLEET_CRASH_SEED=<n>` replays another set of kill points.

use crate::support::{Admin, DEADLINE, Deployment, pin_policy};
use droidfleet_agent::seeded::SplitMix64;
use droidfleet_proto::tls::CaFingerprint;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::device_harness_client::DeviceHarnessClient;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const DEVICES: usize = 2_000;
/// Reset requests in flight at once, so the control plane's writer batches them.
const REQUESTERS: usize = 64;
const KILLS: usize = 3;
const DEFAULT_SEED: u64 = 0x005e_edd4_01df_1ee7;
/// How long the whole run may take before the test gives up.
const RUN_LIMIT: Duration = Duration::from_secs(300);

/// Three distinct kill points in [10, 2·DEVICES − 40] of "resets requested + actions final".
fn kill_points(seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut points = Vec::new();
    while points.len() < KILLS {
        let point = 10 + rng.below((2 * DEVICES - 50) as u64) as usize;
        if !points.contains(&point) {
            points.push(point);
        }
    }
    points.sort_unstable();
    points
}

fn is_final(action: &pb::Action) -> bool {
    !matches!(
        pb::ActionState::try_from(action.state),
        Ok(pb::ActionState::Pending | pb::ActionState::Active)
    )
}

/// Polls `check` until it returns `Some`, waiting `every` between tries (the condition is what
/// synchronises; the pause only spaces the polls), for at most `limit`.
async fn poll<T, F, Fut>(limit: Duration, every: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "condition not reached in {limit:?}"
        );
        tokio::time::sleep(every).await;
    }
}

/// Requests one reset per device, in order, riding out control-plane crashes: after a failed
/// request it asks the restarted control plane whether the reset was recorded before retrying,
/// so each device gets one reset. Returns the ids of the actions the control plane answered as
/// created.
async fn request_resets(
    address: String,
    ca: CaFingerprint,
    token: String,
    ids: Vec<String>,
    requested: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut admin = Admin::connect_pinned(&address, Some(ca), Some(token)).await;
    let mut created = Vec::new();
    for id in ids {
        loop {
            match admin.reset(&id, pb::CredentialScope::Unspecified).await {
                Ok(action) => {
                    created.push(action.action_id);
                    break;
                }
                Err(status) => {
                    assert!(
                        matches!(
                            status.code(),
                            tonic::Code::Unavailable
                                | tonic::Code::Unknown
                                | tonic::Code::Cancelled
                        ),
                        "a reset failed for another reason than the crash: {status:?}"
                    );
                    let recorded = poll(DEADLINE, Duration::from_millis(50), || {
                        let mut admin = admin.clone();
                        let id = id.clone();
                        async move { admin.actions(&id).await.ok() }
                    })
                    .await;
                    if !recorded.is_empty() {
                        break;
                    }
                }
            }
        }
        requested.fetch_add(1, Ordering::SeqCst);
    }
    created
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_resets_at_full_speed_survive_three_control_plane_kills_exactly_once() {
    let started = Instant::now();
    let seed = std::env::var("DROIDFLEET_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SEED);
    let points = kill_points(seed);
    eprintln!(
        "crash test: seed {seed}, kill points {points:?} (of {})",
        2 * DEVICES
    );

    let deployment = Deployment::new();
    let devices: Vec<String> = (0..DEVICES).map(|i| format!("cosu:d{i:03}")).collect();
    let mut control_plane = Some(deployment.control_plane());
    let mut admin = deployment.admin().await;
    let enrollment = admin.enrollment_token(DEVICES as u32, "").await;
    let agent = deployment.agent(&enrollment, &devices);

    // Every device enrolled and its reset token escrowed.
    let ids: Vec<String> = poll(DEADLINE, Duration::from_millis(100), || {
        let mut admin = admin.clone();
        async move {
            let devices = admin.devices().await.ok()?;
            let ready = devices.len() == DEVICES
                && devices.iter().all(|d| {
                    d.escrowed_token_scopes
                        .contains(&(pb::CredentialScope::Device as i32))
                });
            ready.then(|| devices.into_iter().map(|d| d.device_id).collect())
        }
    })
    .await;
    for id in &ids {
        admin
            .assign_policy(id, pb::CredentialScope::Device, pin_policy(6))
            .await;
    }
    eprintln!(
        "crash test: {DEVICES} devices ready after {:?}",
        started.elapsed()
    );

    let requested = Arc::new(AtomicUsize::new(0));
    let mut requesters = tokio::task::JoinSet::new();
    for share in ids.chunks(DEVICES.div_ceil(REQUESTERS)) {
        requesters.spawn(request_resets(
            deployment.address(),
            deployment.ca(),
            admin.token.clone().unwrap(),
            share.to_vec(),
            requested.clone(),
        ));
    }

    let mut kills = points.clone().into_iter().peekable();
    let actions: Vec<pb::Action> = loop {
        assert!(
            started.elapsed() < RUN_LIMIT,
            "not every action is final after {RUN_LIMIT:?}"
        );
        let listed = {
            // One page holds the whole run (ListActions' maximum page is 10,000).
            let request = admin.request(pb::ListActionsRequest {
                page_size: 10_000,
                ..Default::default()
            });
            admin.client.list_actions(request).await
        };
        let Ok(listed) = listed else {
            // The control plane is coming back up.
            tokio::time::sleep(Duration::from_millis(25)).await;
            continue;
        };
        let actions = listed.into_inner().actions;
        let finished = actions.iter().filter(|a| is_final(a)).count();
        let progress = requested.load(Ordering::SeqCst) + finished;
        if let Some(&point) = kills.peek()
            && progress >= point
        {
            kills.next();
            control_plane.take().unwrap().kill();
            eprintln!(
                "crash test: SIGKILL at {progress} (point {point}): {} requested, {finished} final, \
                 after {:?}",
                requested.load(Ordering::SeqCst),
                started.elapsed()
            );
            control_plane = Some(deployment.control_plane());
            continue;
        }
        if kills.peek().is_none()
            && requested.load(Ordering::SeqCst) == DEVICES
            && actions.len() >= DEVICES
            && finished == actions.len()
        {
            break actions;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut created = Vec::new();
    while let Some(share) = requesters.join_next().await {
        created.extend(share.unwrap());
    }
    eprintln!("crash test: all final after {:?}", started.elapsed());

    // What the devices say: how often each command took effect.
    // Read concurrently: each harness call costs a round trip on the agent's side.
    let harness = DeviceHarnessClient::connect(format!("http://{}", agent.address))
        .await
        .unwrap();
    let mut reads = tokio::task::JoinSet::new();
    for i in 0..DEVICES {
        let mut harness = harness.clone();
        reads.spawn(async move {
            harness
                .get_screen(pb::DeviceRef {
                    name: format!("d{i:03}"),
                })
                .await
                .unwrap()
                .into_inner()
        });
    }
    let mut applied: HashMap<String, BTreeMap<String, u32>> = HashMap::new();
    while let Some(screen) = reads.join_next().await {
        let screen = screen.unwrap();
        applied.insert(
            screen.device_id,
            screen.applied_commands.into_iter().collect(),
        );
    }
    eprintln!("crash test: screens read after {:?}", started.elapsed());

    let mut problems = Vec::new();
    for action_id in &created {
        if !actions.iter().any(|a| &a.action_id == action_id) {
            problems.push(format!(
                "{action_id} was answered as created but is not recorded"
            ));
        }
    }
    let mut per_device: HashMap<&str, usize> = HashMap::new();
    for action in &actions {
        *per_device.entry(&action.device_id).or_default() += 1;
        let times = applied
            .get(&action.device_id)
            .and_then(|a| a.get(&action.action_id))
            .copied()
            .unwrap_or(0);
        let done = action.state == pb::ActionState::Done as i32;
        if done != (times == 1) {
            problems.push(format!(
                "{} on {}: state {} but applied {times} time(s); reason {:?}",
                action.action_id, action.device_id, action.state, action.reason
            ));
        }
        if !done {
            problems.push(format!(
                "{} on {} ended {} ({:?}), not done",
                action.action_id, action.device_id, action.state, action.reason
            ));
        }
    }
    for (device, commands) in &applied {
        for (command, times) in commands {
            if *times > 1 {
                problems.push(format!("{command} applied {times} times on {device}"));
            }
            if *times == 1 && !actions.iter().any(|a| &a.action_id == command) {
                problems.push(format!(
                    "{command} applied on {device} but unknown upstream"
                ));
            }
        }
    }
    for id in &ids {
        if per_device.get(id.as_str()).copied().unwrap_or(0) != 1 {
            problems.push(format!(
                "device {id} has {:?} resets, not one",
                per_device.get(id.as_str())
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "seed {seed}, kill points {points:?}:\n{}",
        problems.join("\n")
    );

    drop(agent);
    drop(control_plane);
    eprintln!("crash test: passed in {:?}", started.elapsed());
}
