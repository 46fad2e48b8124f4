//! Tests of the device model, driven the way its runtime and its user drive it. This file holds
//! the fixtures the other test files share (devices set up in a known state, the text forms a
//! leaked secret could take) and the tests of names, statuses and user data; the other files
//! group the tests by concern.

mod lock_screen;
mod persistence;
mod reset;
mod tokens;
mod versions;
mod work_profile;

use super::*;
use base64::Engine as _;
use ring::rand::SystemRandom;

const NOW: u64 = 1_700_000_000_000;
const KDF: KdfParams = KdfParams::LIGHT;
const REQUIRE_ENTRY: ResetOptions = ResetOptions {
    require_entry: true,
    lock_now: false,
};

fn pass(text: &str) -> Passcode {
    Passcode::new(text)
}

fn new_device(ownership: Ownership) -> (Device, SystemRandom) {
    let rng = SystemRandom::new();
    (
        Device::new("phone".into(), ownership, Build::default(), KDF, &rng),
        rng,
    )
}

fn status(device: &Device, scope: Scope) -> StoreStatus {
    device
        .statuses(NOW)
        .into_iter()
        .find(|s| s.scope == scope)
        .unwrap()
}

fn enter(device: &mut Device, scope: Scope, passcode: &str, now_ms: u64) -> EntryOutcome {
    device
        .enter_passcode(scope, &pass(passcode), now_ms)
        .unwrap()
}

fn escrowed(events: &[DeviceEvent], wanted: Scope) -> Option<EscrowToken> {
    events.iter().find_map(|e| match e {
        DeviceEvent::EscrowToken { scope, token } if *scope == wanted => Some(token.clone()),
        _ => None,
    })
}

/// A COSU device with passcode 2580, an active escrow token and one user-data value.
fn cosu_ready() -> (Device, SystemRandom, EscrowToken) {
    let (mut device, rng) = new_device(Ownership::Cosu);
    device.ensure_tokens(&rng);
    let token = escrowed(&device.take_events(), Scope::Device).unwrap();
    device
        .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
        .unwrap();
    device
        .write_user_data(Scope::Device, "notes", b"groceries", &rng)
        .unwrap();
    assert_eq!(
        status(&device, Scope::Device).token_state,
        TokenState::Active
    );
    device.take_events();
    (device, rng, token)
}

/// A COPE device with device passcode 2580, active tokens on both stores (set before any
/// passcode) and one value in the work profile.
fn cope_ready() -> (Device, SystemRandom, EscrowToken) {
    let (mut device, rng) = new_device(Ownership::Cope);
    device.ensure_tokens(&rng);
    let work_token = escrowed(&device.take_events(), Scope::WorkProfile).unwrap();
    device
        .set_passcode(Scope::Device, None, &pass("2580"), NOW, &rng)
        .unwrap();
    device
        .write_user_data(Scope::WorkProfile, "mail", b"quarterly report", &rng)
        .unwrap();
    device.take_events();
    (device, rng, work_token)
}

fn min_six() -> PasscodePolicy {
    PasscodePolicy {
        passcode_type: PasscodeType::Pin,
        min_length: 6,
        ..PasscodePolicy::default()
    }
}

/// Text forms a byte string could take in JSON or Debug output.
fn renderings(bytes: &[u8]) -> Vec<String> {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    vec![
        base64::engine::general_purpose::STANDARD.encode(bytes),
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes),
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes),
        hex,
        serde_json::to_string(bytes).unwrap(),
        format!("{bytes:?}"),
    ]
}

#[test]
fn ownership_and_scope_names() {
    for ownership in Ownership::ALL {
        assert_eq!(Ownership::parse(ownership.as_str()), Some(ownership));
    }
    assert_eq!(Ownership::parse("BYOD"), Some(Ownership::Byod));
    assert_eq!(Ownership::parse("kiosk"), None);
    let with_profile: Vec<_> = Ownership::ALL
        .into_iter()
        .filter(|o| o.has_work_profile())
        .collect();
    assert_eq!(
        with_profile,
        vec![Ownership::Cobo, Ownership::Cope, Ownership::Byod]
    );
    assert_eq!(Scope::WorkProfile.as_str(), "work_profile");
    assert_eq!(Scope::parse("work_profile"), Some(Scope::WorkProfile));
    assert_eq!(Scope::parse("work"), None);
}

#[test]
fn new_device_has_the_stores_its_ownership_implies() {
    let (cosu, _) = new_device(Ownership::Cosu);
    assert_eq!(cosu.scopes(), vec![Scope::Device]);
    let (cope, _) = new_device(Ownership::Cope);
    assert_eq!(cope.scopes(), vec![Scope::Device, Scope::WorkProfile]);
    for s in cope.statuses(NOW) {
        assert!(!s.has_passcode && !s.locked && !s.wiped && !s.separate_challenge);
        assert_eq!(s.token_state, TokenState::None);
    }
    assert!(cope.notifications().is_empty());
}

#[test]
fn status_changes_are_reported_once() {
    let (mut device, _, _) = cosu_ready();
    device.lock(Scope::Device).unwrap();
    assert!(matches!(
        device.take_events().as_slice(),
        [DeviceEvent::StatusChanged]
    ));
    device.lock(Scope::Device).unwrap();
    device.set_policy(Scope::Device, Some(min_six())).unwrap();
    assert!(device.take_events().is_empty());
    // A store without passcode has nothing to lock.
    let (mut open, _) = new_device(Ownership::Aosp);
    open.lock(Scope::Device).unwrap();
    assert!(!status(&open, Scope::Device).locked);
    assert!(open.take_events().is_empty());
}

#[test]
fn user_data_needs_an_unlocked_store() {
    let (mut device, rng, _) = cosu_ready();
    device.lock(Scope::Device).unwrap();
    assert_eq!(
        device.write_user_data(Scope::Device, "k", b"v", &rng),
        Err(DeviceError::StoreLocked(Scope::Device))
    );
    assert_eq!(
        device.read_user_data(Scope::WorkProfile, "k"),
        Err(DeviceError::StoreMissing(Scope::WorkProfile))
    );
}

#[test]
fn error_messages_name_the_problem() {
    assert_eq!(
        DeviceError::StoreMissing(Scope::WorkProfile).to_string(),
        "this device has no work profile credential store"
    );
    assert_eq!(
        DeviceError::Token(TokenError::TooShort).to_string(),
        "token must be at least 32 bytes long"
    );
    assert_eq!(
        ResetError::PolicyViolation(PolicyViolation::TooShort { min: 6 }).to_string(),
        "the new passcode does not satisfy the policy: the passcode is shorter than 6 characters"
    );
}
