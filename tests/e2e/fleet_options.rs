//! `droidfleet-agent run`'s fleet options: `--devices N --mix … --seed S` expands to the same
//! fleet for the same seed and follows the weights; a bad `--mix` names its bad part; and a fleet
//! sharing a pool of connections enrolls every device against a control plane on loopback.

use crate::support::{DEADLINE, Embedded};
use clap::Parser;
use droidfleet_agent::cli::{RunArgs, device_specs};
use droidfleet_agent::device::{KdfParams, Ownership};
use droidfleet_agent::fleet::{Fleet, FleetConfig, RampUp};
use droidfleet_agent::seeded::{AndroidMix, Mix, ProfileMix};
use std::sync::Arc;

/// `RunArgs` as the command line would fill them.
#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    run: RunArgs,
}

fn parse(args: &[&str]) -> Result<RunArgs, clap::Error> {
    Cli::try_parse_from(std::iter::once("agent").chain(args.iter().copied())).map(|c| c.run)
}

#[test]
fn the_same_seed_gives_the_same_fleet() {
    let args = [
        "--devices",
        "50",
        "--mix",
        "cosu=1,cobo=2,byod=3",
        "--seed",
        "7",
    ];
    let first = device_specs(&parse(&args).unwrap()).unwrap();
    let second = device_specs(&parse(&args).unwrap()).unwrap();
    let names = |specs: &[droidfleet_agent::fleet::DeviceSpec]| {
        specs
            .iter()
            .map(|s| (s.name.clone(), s.ownership))
            .collect::<Vec<_>>()
    };
    assert_eq!(names(&first), names(&second));
    assert_eq!(first.len(), 50);
    for (index, spec) in first.iter().enumerate() {
        assert_eq!(spec.name, format!("{}-{index}", spec.ownership.as_str()));
        assert!(
            !matches!(spec.ownership, Ownership::Cope | Ownership::Aosp),
            "a type left out of --mix weighs 0"
        );
    }
    let other = device_specs(
        &parse(&[
            "--devices",
            "50",
            "--mix",
            "cosu=1,cobo=2,byod=3",
            "--seed",
            "8",
        ])
        .unwrap(),
    )
    .unwrap();
    assert_ne!(names(&first), names(&other), "another seed, another fleet");
}

#[test]
fn generated_types_follow_the_weights() {
    let mix: Mix = "cosu=1,cobo=0,cope=2,byod=5,aosp=2".parse().unwrap();
    let specs = mix.devices(10_000, 42, &AndroidMix::default(), &ProfileMix::default());
    let share = |o: Ownership| specs.iter().filter(|s| s.ownership == o).count() as f64 / 10_000.0;
    assert_eq!(share(Ownership::Cobo), 0.0);
    for (ownership, expected) in [
        (Ownership::Cosu, 0.1),
        (Ownership::Cope, 0.2),
        (Ownership::Byod, 0.5),
        (Ownership::Aosp, 0.2),
    ] {
        let got = share(ownership);
        assert!(
            (got - expected).abs() < 0.03,
            "{ownership:?}: share {got}, weight share {expected}"
        );
    }
}

#[test]
fn explicit_devices_combine_with_generated_ones() {
    let args = parse(&[
        "--device",
        "byod:alice-phone",
        "--devices",
        "3",
        "--seed",
        "1",
    ])
    .unwrap();
    let specs = device_specs(&args).unwrap();
    assert_eq!(specs.len(), 4);
    assert_eq!(specs[0].name, "alice-phone");
    // Neither option is required alone, but one of them is.
    assert!(parse(&["--device", "cosu:kiosk"]).is_ok());
    assert!(parse(&[]).is_err());
}

#[test]
fn a_device_name_given_twice_is_refused() {
    let first = Mix::default()
        .devices(1, 3, &AndroidMix::default(), &ProfileMix::default())
        .remove(0);
    let device = format!("{}:{}", first.ownership.as_str(), first.name);
    let args = parse(&["--device", &device, "--devices", "1", "--seed", "3"]).unwrap();
    let error = device_specs(&args).unwrap_err().to_string();
    assert!(error.contains(&first.name), "{error}");
}

#[test]
fn a_bad_mix_names_its_bad_part() {
    for (mix, part) in [
        ("cosu=1,phone=2", "phone=2"),
        ("cosu=1,byod", "byod"),
        ("cosu=1,cobo=lots", "cobo=lots"),
        ("cosu=-1", "cosu=-1"),
        ("cosu=1,cosu=2", "cosu=2"),
        ("cosu=0,aosp=0", "every weight is 0"),
    ] {
        let error = mix.parse::<Mix>().unwrap_err();
        assert!(error.contains(part), "--mix {mix}: {error}");
        let error = parse(&["--devices", "2", "--mix", mix])
            .err()
            .unwrap()
            .to_string();
        assert!(
            error.contains(part),
            "--mix {mix} on the command line: {error}"
        );
    }
}

#[test]
fn the_fleet_size_is_bounded() {
    let error = device_specs(&parse(&["--devices", "0"]).unwrap()).unwrap_err();
    assert!(error.to_string().contains("--devices 0"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_devices_on_two_connections_all_enroll() {
    let control_plane = Embedded::start().await;
    let address = control_plane.address.clone();
    let mut admin = control_plane.admin().await;
    let enrollment_token = admin.enrollment_token(6, "").await;

    let agent_dir = tempfile::tempdir().unwrap();
    let devices = Mix::default().devices(6, 11, &AndroidMix::default(), &ProfileMix::default());
    let fleet = Fleet::load(FleetConfig {
        control_plane: address.clone(),
        state_dir: Some(agent_dir.path().to_path_buf()),
        enrollment_token: Some(enrollment_token),
        kdf: KdfParams::LIGHT,
        devices: devices.clone(),
        clock: Arc::new(droidfleet_agent::clock::SystemClock),
        connections: 2,
        faults: Default::default(),
    })
    .await
    .unwrap();
    let mut changes = fleet.screen_changes();
    let ramp = RampUp {
        window_ms: 50,
        seed: 11,
    };
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(fleet.clone().run_ramped(stopped, ramp));
    let all_enrolled = || {
        devices.iter().all(|d| {
            let screen = fleet.screen(&d.name).unwrap();
            screen.connected && screen.device_id.is_some()
        })
    };
    tokio::time::timeout(DEADLINE, async {
        while !all_enrolled() {
            // Each change to any device (enrollment, session open) wakes this check.
            let _ = changes.recv().await;
        }
    })
    .await
    .expect("every device enrolls and connects in time");
    assert_eq!(fleet.metrics().devices_connected(), 6);
    let listed = admin.devices().await.unwrap();
    assert_eq!(listed.len(), 6, "the control plane knows all six devices");

    stop.send(true).unwrap();
    agent.await.unwrap();
    control_plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_quarantines_its_device_and_the_rest_of_the_fleet_starts() {
    let control_plane = Embedded::start().await;
    let mut admin = control_plane.admin().await;
    let enrollment_token = admin.enrollment_token(2, "").await;
    let agent_dir = tempfile::tempdir().unwrap();
    let corrupt = agent_dir.path().join("kiosk-broken.json");
    std::fs::write(&corrupt, b"{\"format\": 1, \"name\": tru").unwrap();
    let devices: Vec<_> = ["cosu:kiosk-broken", "cosu:kiosk-ok-1", "cosu:kiosk-ok-2"]
        .iter()
        .map(|spec| spec.parse().unwrap())
        .collect();
    let fleet = Fleet::load(FleetConfig {
        control_plane: control_plane.address.clone(),
        state_dir: Some(agent_dir.path().to_path_buf()),
        enrollment_token: Some(enrollment_token),
        kdf: KdfParams::LIGHT,
        devices,
        clock: Arc::new(droidfleet_agent::clock::SystemClock),
        connections: 1,
        faults: Default::default(),
    })
    .await
    .expect("one corrupt state file does not stop the fleet");
    let quarantined: Vec<String> = fleet.quarantined().iter().map(|e| e.to_string()).collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(
        quarantined[0].contains("kiosk-broken") && quarantined[0].contains("corrupt"),
        "{quarantined:?}"
    );
    assert!(fleet.screen("kiosk-broken").is_err(), "not hosted");
    let hosted: Vec<&str> = fleet.names().collect();
    assert_eq!(hosted, ["kiosk-ok-1", "kiosk-ok-2"]);

    let mut changes = fleet.screen_changes();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(fleet.clone().run(stopped));
    let all_enrolled = || {
        hosted.iter().all(|name| {
            let screen = fleet.screen(name).unwrap();
            screen.connected && screen.device_id.is_some()
        })
    };
    tokio::time::timeout(DEADLINE, async {
        while !all_enrolled() {
            let _ = changes.recv().await;
        }
    })
    .await
    .expect("the healthy devices enroll and connect");
    stop.send(true).unwrap();
    agent.await.unwrap();
    assert_eq!(
        std::fs::read(&corrupt).unwrap(),
        b"{\"format\": 1, \"name\": tru",
        "the quarantined file is left as it was, for inspection"
    );
    control_plane.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_state_file_from_before_device_keys_is_refused_asking_for_re_enrollment() {
    let control_plane = Embedded::start().await;
    let mut admin = control_plane.admin().await;
    let enrollment_token = admin.enrollment_token(3, "").await;
    let agent_dir = tempfile::tempdir().unwrap();
    let config = |devices: &[&str], token: Option<String>| FleetConfig {
        control_plane: control_plane.address.clone(),
        state_dir: Some(agent_dir.path().to_path_buf()),
        enrollment_token: token,
        kdf: KdfParams::LIGHT,
        devices: devices.iter().map(|spec| spec.parse().unwrap()).collect(),
        clock: Arc::new(droidfleet_agent::clock::SystemClock),
        connections: 1,
        faults: Default::default(),
    };
    // Two devices enroll and connect, as any fleet does.
    let names = ["cosu:kiosk-old", "cosu:kiosk-new"];
    let fleet = Fleet::load(config(&names, Some(enrollment_token.clone())))
        .await
        .unwrap();
    let mut changes = fleet.screen_changes();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(fleet.clone().run(stopped));
    let all_connected = |fleet: &Fleet, names: &[&str]| {
        names.iter().all(|name| {
            let screen = fleet.screen(name).unwrap();
            screen.connected && screen.device_id.is_some()
        })
    };
    tokio::time::timeout(DEADLINE, async {
        while !all_connected(&fleet, &["kiosk-old", "kiosk-new"]) {
            let _ = changes.recv().await;
        }
    })
    .await
    .expect("both devices enroll and connect");
    stop.send(true).unwrap();
    agent.await.unwrap();

    // kiosk-old's file as an agent before device keys wrote it: a bearer credential, no key.
    let old = agent_dir.path().join("kiosk-old.json");
    let mut state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&old).unwrap()).unwrap();
    let enrollment = state["enrollment"].as_object_mut().unwrap();
    assert!(
        enrollment.remove("key").is_some(),
        "the key is in the state file"
    );
    enrollment.insert("credential".into(), "dfd_a-bearer-credential".into());
    let written = serde_json::to_vec(&state).unwrap();
    std::fs::write(&old, &written).unwrap();

    let fleet = Fleet::load(config(&names, None))
        .await
        .expect("one device from before keys does not stop the fleet");
    let quarantined: Vec<String> = fleet.quarantined().iter().map(|e| e.to_string()).collect();
    assert_eq!(quarantined.len(), 1, "{quarantined:?}");
    assert!(
        quarantined[0].contains("kiosk-old")
            && quarantined[0].contains("re-enroll")
            && quarantined[0].contains("bearer credential"),
        "{quarantined:?}"
    );
    assert!(
        !quarantined[0].contains("dfd_a-bearer-credential"),
        "no secret in the message: {quarantined:?}"
    );
    assert!(fleet.screen("kiosk-old").is_err(), "not hosted");
    let mut changes = fleet.screen_changes();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let agent = tokio::spawn(fleet.clone().run(stopped));
    tokio::time::timeout(DEADLINE, async {
        while !all_connected(&fleet, &["kiosk-new"]) {
            let _ = changes.recv().await;
        }
    })
    .await
    .expect("the other device reconnects with its key");
    stop.send(true).unwrap();
    agent.await.unwrap();
    assert_eq!(
        std::fs::read(&old).unwrap(),
        written,
        "the file is left for inspection"
    );
    control_plane.stop().await;
}
