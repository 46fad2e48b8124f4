//! The console's device list over a large fleet: enrolls 100,000 devices (through the device
//! gateway, as an agent would) into a real SQLite file, ends a reset on every hundredth, then
//! times the admin API calls the device list makes and prints their medians, each next to a
//! baseline measured in the same run (GetDevice: one audited admin call reading one device).
//!
//! `cargo bench -p droidfleet-console --bench device_list [-- --devices N --repeat R]`

use droidfleet_control_plane::clock::SystemClock;
use droidfleet_control_plane::grpc::{AdminApi, Gateway};
use droidfleet_control_plane::server;
use droidfleet_control_plane::service::Config;
use droidfleet_proto::v1 as pb;
use droidfleet_proto::v1::admin_service_server::AdminService;
use droidfleet_proto::v1::device_gateway_server::DeviceGateway;
use std::sync::Arc;
use std::time::Instant;
use tokio::task::JoinSet;

/// Enrollments in flight at once: enough to keep SQLite's one writer busy.
const ENROLL_CONCURRENCY: usize = 32;
const OWNERSHIPS: [(pb::Ownership, &str); 5] = [
    (pb::Ownership::Cosu, "cosu"),
    (pb::Ownership::Cobo, "cobo"),
    (pb::Ownership::Cope, "cope"),
    (pb::Ownership::Byod, "byod"),
    (pb::Ownership::Aosp, "aosp"),
];

struct Options {
    devices: usize,
    repeat: usize,
}

fn options() -> Options {
    let mut options = Options {
        devices: 100_000,
        repeat: 15,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> usize {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--devices" => options.devices = value("--devices"),
            "--repeat" => options.repeat = value("--repeat").max(1),
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            other => panic!("unknown option {other}: use --devices N, --repeat R"),
        }
    }
    options
}

fn authorized<T>(token: &str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// Median, min and max of `repeat` timings of `call`, in milliseconds.
async fn time<F, Fut>(repeat: usize, mut call: F) -> (f64, f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let started = Instant::now();
        call().await;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    (times[times.len() / 2], times[0], times[times.len() - 1])
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(run(options));
}

async fn run(options: Options) {
    let dir = tempfile::tempdir().unwrap();
    let opened = server::open(Config::new(dir.path()), Arc::new(SystemClock))
        .await
        .unwrap();
    let token = std::fs::read_to_string(opened.bootstrap_token_path.unwrap())
        .unwrap()
        .trim()
        .to_string();
    let api = Arc::new(AdminApi::new(opened.control_plane.clone()));
    let gateway = Arc::new(Gateway::new(opened.control_plane));

    let mut groups = Vec::new();
    for group in ["north", "south"] {
        let uses = u32::try_from(options.devices.div_ceil(2)).unwrap();
        let enrollment = api
            .create_enrollment_token(authorized(
                &token,
                pb::CreateEnrollmentTokenRequest {
                    max_uses: uses,
                    ttl_seconds: 24 * 3600,
                    group: group.into(),
                },
            ))
            .await
            .unwrap()
            .into_inner()
            .enrollment_token;
        groups.push(enrollment);
    }

    println!(
        "enrolling {} devices into {} (SQLite, synchronous=FULL)…",
        options.devices,
        dir.path().join(server::DATABASE_FILE).display()
    );
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    let mut device_ids = vec![String::new(); options.devices];
    let mut next = 0;
    let mut done = 0;
    while done < options.devices {
        while next < options.devices && tasks.len() < ENROLL_CONCURRENCY {
            let (ownership, kind) = OWNERSHIPS[next % OWNERSHIPS.len()];
            let request = pb::EnrollRequest {
                enrollment_token: groups[next % 2].clone(),
                ownership: ownership as i32,
                display_name: format!("{kind}-{next}"),
                // Any 32 bytes: these devices never open a session.
                device_public_key: vec![9; 32],
            };
            let gateway = gateway.clone();
            let index = next;
            tasks.spawn(async move {
                let enrolled = gateway
                    .enroll(tonic::Request::new(request))
                    .await
                    .unwrap()
                    .into_inner();
                (index, enrolled.device_id)
            });
            next += 1;
        }
        let (index, id) = tasks.join_next().await.unwrap().unwrap();
        device_ids[index] = id;
        done += 1;
        if done % (options.devices / 10).max(1) == 0 {
            println!(
                "  {done} enrolled, {:.0} devices/s",
                done as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let enroll_s = started.elapsed().as_secs_f64();

    // A reset of a device without a passcode policy ends failed at once: every hundredth
    // device's newest action is a failure, for the state filter.
    let failed = options.devices.div_ceil(100);
    for index in (0..options.devices).step_by(100) {
        api.reset_passcode(authorized(
            &token,
            pb::ResetPasscodeRequest {
                device_id: device_ids[index].clone(),
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    }
    println!(
        "{} devices enrolled in {enroll_s:.1} s ({:.0}/s); {failed} resets ended failed",
        options.devices,
        options.devices as f64 / enroll_s
    );

    let search = |request: pb::SearchDevicesRequest| {
        let (api, token) = (api.clone(), token.clone());
        move || {
            let (api, token, request) = (api.clone(), token.clone(), request.clone());
            async move {
                let page = api
                    .search_devices(authorized(&token, request))
                    .await
                    .unwrap()
                    .into_inner();
                assert!(!page.devices.is_empty(), "the search finds devices");
            }
        }
    };
    let first_page = pb::SearchDevicesRequest {
        page_size: 50,
        ..Default::default()
    };
    let second_token = api
        .search_devices(authorized(&token, first_page.clone()))
        .await
        .unwrap()
        .into_inner()
        .next_page_token;
    let middle_token = {
        // A page in the middle of the list: walked to in pages of 1000 (a token holds its
        // filters, so it must come from the same unfiltered list).
        let mut page_token = String::new();
        for _ in 0..options.devices / 2 / 1000 {
            let walk = pb::SearchDevicesRequest {
                page_size: 1000,
                page_token,
                ..Default::default()
            };
            page_token = api
                .search_devices(authorized(&token, walk))
                .await
                .unwrap()
                .into_inner()
                .next_page_token;
        }
        page_token
    };
    // The digits of one BYOD device's name: found in it and in any longer name that contains
    // them, so the database must look at every name (no index helps a substring).
    let searched_digits = format!("-{}", options.devices * 42 / 100 / 5 * 5 + 3);
    let baseline_id = device_ids[options.devices / 2].clone();
    let repeat = options.repeat;
    let (base, base_min, base_max) = time(repeat, || {
        let (api, token, id) = (api.clone(), token.clone(), baseline_id.clone());
        async move {
            api.get_device(authorized(&token, pb::GetDeviceRequest { device_id: id }))
                .await
                .unwrap();
        }
    })
    .await;
    let scenarios: Vec<(&str, pb::SearchDevicesRequest)> = vec![
        ("first page (50 devices)", first_page.clone()),
        (
            "next page (keyset token)",
            pb::SearchDevicesRequest {
                page_size: 50,
                page_token: second_token,
                ..Default::default()
            },
        ),
        (
            "a page in the middle",
            pb::SearchDevicesRequest {
                page_size: 50,
                page_token: middle_token,
                ..Default::default()
            },
        ),
        (
            "filtered: type BYOD, group north",
            pb::SearchDevicesRequest {
                page_size: 50,
                ownership: pb::Ownership::Byod as i32,
                group: "north".into(),
                ..Default::default()
            },
        ),
        (
            "search: digits anywhere in names",
            pb::SearchDevicesRequest {
                page_size: 50,
                search: searched_digits,
                ..Default::default()
            },
        ),
        (
            "search by exact device id",
            pb::SearchDevicesRequest {
                page_size: 50,
                search: device_ids[options.devices / 3].clone(),
                ..Default::default()
            },
        ),
        (
            "filtered: latest action failed",
            pb::SearchDevicesRequest {
                page_size: 50,
                latest_action_state: pb::ActionState::Failed as i32,
                ..Default::default()
            },
        ),
    ];
    println!();
    println!(
        "{:<52} {:>10} {:>9} {:>9} {:>11}",
        "admin call (median of repeats)", "median ms", "min", "max", "÷ baseline"
    );
    println!(
        "{:<52} {:>10.2} {:>9.2} {:>9.2} {:>11}",
        "baseline: GetDevice", base, base_min, base_max, "1.0"
    );
    for (name, request) in scenarios {
        let (median, min, max) = time(repeat, search(request)).await;
        println!(
            "{:<52} {:>10.2} {:>9.2} {:>9.2} {:>11.1}",
            format!("SearchDevices: {name}"),
            median,
            min,
            max,
            median / base
        );
    }
    // What listing the whole fleet costs: every page of ListDevices at its largest size (three
    // runs: it is slow).
    let expected = options.devices;
    let (all, all_min, all_max) = time(3.min(repeat), || {
        let (api, token) = (api.clone(), token.clone());
        async move {
            let (mut listed, mut page_token) = (0, String::new());
            for _ in 0..=expected / 10_000 {
                let request = pb::ListDevicesRequest {
                    page_size: 10_000,
                    page_token,
                    ..Default::default()
                };
                let page = api
                    .list_devices(authorized(&token, request))
                    .await
                    .unwrap()
                    .into_inner();
                listed += page.devices.len();
                page_token = page.next_page_token;
                if page_token.is_empty() {
                    break;
                }
            }
            assert_eq!(listed, expected);
        }
    })
    .await;
    println!(
        "{:<52} {:>10.2} {:>9.2} {:>9.2} {:>11.1}",
        "ListDevices: every device, pages of 10,000",
        all,
        all_min,
        all_max,
        all / base
    );
    let size = std::fs::metadata(dir.path().join(server::DATABASE_FILE))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "\n{} devices, database {:.1} MiB, {repeat} repeats per call",
        options.devices,
        size as f64 / (1024.0 * 1024.0)
    );
}
