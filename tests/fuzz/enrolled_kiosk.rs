//! The device every device-side target fuzzes: an enrolled kiosk (one store, the device's) that
//! trusts one fixed control-plane key, so corpus inputs mean the same on every run.

use droidfleet_agent::device::{Build, Device, DeviceKey, Enrollment, KdfParams, Ownership};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

pub(crate) const DEVICE_ID: &str = "dev-fuzz";

/// The control plane's key.
pub(crate) fn signing_key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_seed_unchecked(&[7; 32]).expect("a 32-byte seed is a key")
}

/// A kiosk enrolled as `DEVICE_ID`, trusting `keys`; anything for the work profile it lacks is
/// refused.
pub(crate) fn enrolled_kiosk(keys: &Ed25519KeyPair, rng: &SystemRandom) -> Device {
    let mut device = Device::new(
        "fuzz".into(),
        Ownership::Cosu,
        Build::default(),
        KdfParams::LIGHT,
        rng,
    );
    device.set_enrollment(Enrollment {
        device_id: DEVICE_ID.into(),
        key: DeviceKey::new([5; 32]),
        command_public_key: keys.public_key().as_ref().to_vec(),
    });
    device
}
