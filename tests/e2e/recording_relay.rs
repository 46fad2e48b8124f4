//! Acceptance of TLS on the wire: a recording relay between the agent and the control plane and
//! another between the admin CLI and the control plane, for a whole enroll → reset → reveal →
//! entry flow, records none of the secrets that flow crosses. The same relays in front of a
//! plaintext control plane record them, so the search would find them if they were there. The
//! device's private key crosses neither: it never leaves the device.

use crate::support::{Relay, World, pin_policy, socket_address};
use base64::Engine as _;
use droidfleet_agent::device::{Build, Ownership};
use droidfleet_control_plane::service::TlsSource;
use droidfleet_proto::v1 as pb;
use pb::CredentialScope::Device as DEVICE;

const OLD_PIN: &str = "2580";

/// What a whole flow through the relays left behind: the relays' recordings and the secrets the
/// flow used.
struct Recorded {
    agent_side: Vec<u8>,
    cli_side: Vec<u8>,
    secrets: Vec<(&'static str, Vec<u8>)>,
}

/// The one secret that is never sent at all, even to a plaintext control plane.
const PRIVATE_KEY: &str = "the device's private key";

/// Enrolls a kiosk through a relay, resets its passcode and reveals the new one with the CLI
/// through another relay, and has the user enter it; `tls` picks how the control plane serves.
async fn whole_flow_through_relays(tls: TlsSource) -> Recorded {
    let mut agent_relay = None;
    let mut world = World::start_via(
        &[("kiosk", Ownership::Cosu, Build::default())],
        |config| config.tls = tls,
        |address| {
            let (scheme, _) = address.split_once("://").unwrap();
            let relay = Relay::start(socket_address(address));
            let url = relay.url(scheme);
            agent_relay = Some(relay);
            url
        },
    )
    .await;
    let agent_relay = agent_relay.unwrap();
    let scheme = world.address.split_once("://").unwrap().0.to_string();
    let cli_relay = Relay::start(socket_address(&world.address));
    let cli_server = cli_relay.url(&scheme);

    let id = world.device_id("kiosk").await;
    world.set_passcode("kiosk", DEVICE, "", OLD_PIN).await;
    world.admin.wait_escrowed(&id, DEVICE).await;
    world.admin.assign_policy(&id, DEVICE, pin_policy(6)).await;

    let (ok, out, err) = world
        .cli_at(&cli_server, &["--output", "json", "reset-passcode", &id])
        .await;
    assert!(ok, "reset: {out}{err}");
    let action: serde_json::Value = serde_json::from_str(&out).unwrap();
    let action_id = action["action_id"].as_str().unwrap().to_string();
    let applied = world.admin.wait_final(&action_id).await;
    assert_eq!(
        applied.state,
        pb::ActionState::Done as i32,
        "{}",
        applied.reason
    );
    let (ok, out, err) = world
        .cli_at(&cli_server, &["reveal-passcode", &action_id])
        .await;
    assert!(ok, "reveal: {out}{err}");
    let passcode = out.trim().to_string();
    assert_eq!(passcode.len(), 6, "a six-digit PIN: {passcode:?}");
    assert!(world.enter("kiosk", DEVICE, &passcode).await);

    let state = world.agent_state("kiosk");
    let private_key = base64::engine::general_purpose::STANDARD
        .decode(state["enrollment"]["key"].as_str().unwrap())
        .unwrap();
    let enrollment_token = world.enrollment_token().to_string();
    let enrollment_secret =
        droidfleet_proto::tls::enrollment_token_secret(&enrollment_token).to_string();
    Recorded {
        agent_side: agent_relay.recorded(),
        cli_side: cli_relay.recorded(),
        secrets: vec![
            ("the new passcode", passcode.into_bytes()),
            ("the enrollment token", enrollment_token.into_bytes()),
            (
                "the enrollment token's secret",
                enrollment_secret.into_bytes(),
            ),
            (PRIVATE_KEY, private_key),
            (
                "the admin's bearer token",
                world.admin.token.clone().unwrap().into_bytes(),
            ),
        ],
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_on_the_path_records_no_secret_of_a_whole_reset() {
    let recorded = whole_flow_through_relays(TlsSource::Generated {
        extra_names: Vec::new(),
    })
    .await;
    // The relays did see the traffic: the whole flow crossed them.
    assert!(
        recorded.agent_side.len() > 1000,
        "{}",
        recorded.agent_side.len()
    );
    assert!(
        recorded.cli_side.len() > 1000,
        "{}",
        recorded.cli_side.len()
    );
    for (name, secret) in &recorded.secrets {
        assert!(!secret.is_empty(), "{name}");
        for (side, bytes) in [("agent", &recorded.agent_side), ("CLI", &recorded.cli_side)] {
            assert!(
                !contains(bytes, secret),
                "{name} crossed the {side}'s relay readable"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_relay_reads_every_secret_off_a_plaintext_control_plane() {
    let recorded = whole_flow_through_relays(TlsSource::Plaintext).await;
    let both: Vec<u8> = [recorded.agent_side, recorded.cli_side].concat();
    // What protobuf bodies carry crosses verbatim. (Header values, such as the admin's bearer
    // token, are HPACK-Huffman-coded by HTTP/2, so a plain byte search would not find them.)
    for (name, secret) in &recorded.secrets {
        if name.starts_with("the admin") {
            continue;
        }
        if *name == PRIVATE_KEY {
            assert!(!contains(&both, secret), "{name} was sent");
            continue;
        }
        assert!(contains(&both, secret), "{name} not found in plaintext");
    }
}
