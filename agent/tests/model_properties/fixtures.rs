//! The fixed sets every operation draws from: passcodes, the policies an admin assigns, and the
//! verdict of each policy on each passcode written out by hand ([`VALID`]), so the device's
//! validator is not the oracle of its own behaviour. Also Gatekeeper's throttle schedule,
//! written out again for the reference model.

use droidfleet_agent::device::{KdfParams, PasscodeComplexity, PasscodePolicy, PasscodeType};

/// Cheap Argon2id, so hundreds of sequences run in seconds in a debug build.
pub(crate) const KDF: KdfParams = KdfParams::LIGHT;
pub(crate) const START_MS: u64 = 1_700_000_000_000;
pub(crate) const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// The passcodes every operation picks from: PINs with and without sequences, passwords, and
/// two that no rule admits (too short, too long).
pub(crate) const PASSCODES: [&str; 10] = [
    "2580",
    "1234",
    "914682",
    "abc",
    "orchid42",
    "Zq7!wX3k",
    "12345678901234567",
    "7391",
    "19283746",
    "0000",
];

pub(crate) const NO_POLICY: usize = 0;
const WIPE_POLICY: usize = 5;
const WIPE_LIMIT: u32 = 3;

/// The policies an admin assigns; index [`NO_POLICY`] removes the policy.
pub(crate) fn policy(index: usize) -> Option<PasscodePolicy> {
    let base = PasscodePolicy::default();
    match index {
        NO_POLICY => None,
        1 => Some(PasscodePolicy {
            passcode_type: PasscodeType::Pin,
            min_length: 6,
            ..base
        }),
        2 => Some(PasscodePolicy {
            passcode_type: PasscodeType::NumericComplex,
            min_length: 4,
            ..base
        }),
        3 => Some(PasscodePolicy {
            passcode_type: PasscodeType::Alphanumeric,
            min_length: 8,
            complexity: PasscodeComplexity::Medium,
            ..base
        }),
        4 => Some(PasscodePolicy {
            passcode_type: PasscodeType::Complex,
            min_length: 8,
            min_upper_case: 1,
            min_symbols: 1,
            ..base
        }),
        WIPE_POLICY => Some(PasscodePolicy {
            passcode_type: PasscodeType::Pin,
            min_length: 4,
            max_failed_attempts_before_wipe: WIPE_LIMIT,
            ..base
        }),
        _ => unreachable!("no policy {index}"),
    }
}

/// Whether `PASSCODES[j]` meets `policy(i)`, worked out by hand from Android's rules: the
/// no-policy rule is 4 to 16 printable characters; a PIN policy refuses letters; numeric
/// complex refuses runs of 4 such as 1234 or 0000; password policies refuse a PIN.
pub(crate) const VALID: [[bool; 10]; 6] = [
    //  2580  1234   914682 abc    orchid42 Zq7!wX3k 17-digit 7391  19283746 0000
    [true, true, true, false, true, true, false, true, true, true],
    [
        false, false, true, false, false, false, false, false, true, false,
    ],
    [
        true, false, true, false, false, false, false, true, true, false,
    ],
    [
        false, false, false, false, true, true, false, false, false, false,
    ],
    [
        false, false, false, false, false, true, false, false, false, false,
    ],
    [
        true, true, true, false, false, false, false, true, true, true,
    ],
];

pub(crate) fn valid(policy: usize, passcode: &str) -> bool {
    let index = PASSCODES
        .iter()
        .position(|p| *p == passcode)
        .expect("a passcode from the table");
    VALID[policy][index]
}

/// Whether `PASSCODES[j]` meets a complexity bucket alone, worked out by hand from Android 12's
/// `PasswordMetrics`: medium is a PIN or password of at least 4 without a sequence longer than
/// 3; high is a PIN of at least 8 or a password of at least 6, likewise; 16 at most.
const MEDIUM_VALID: [bool; 10] = [
    true, false, true, false, true, true, false, true, true, false,
];
const HIGH_VALID: [bool; 10] = [
    false, false, false, false, true, true, false, false, true, false,
];

/// On a personally owned device from API level 31, the device-scope policy the management app
/// can apply: its quality becomes a complexity bucket (numeric types medium, password types
/// high; the Android Management API's translation) and nothing else of it stays but the wipe
/// limit. Whether `passcode` meets that bucket.
pub(crate) fn meets_translated_device_policy(policy: usize, passcode: &str) -> bool {
    let index = PASSCODES
        .iter()
        .position(|p| *p == passcode)
        .expect("a passcode from the table");
    match policy {
        NO_POLICY => true,
        1 | 2 | WIPE_POLICY => MEDIUM_VALID[index],
        _ => HIGH_VALID[index],
    }
}

/// Whether `passcode` meets policies `a` and `b` at once, as one credential held to both admins
/// (the device passcode under a unified work profile). Worked out from the table: a PIN-type
/// policy (1, 2, 5) with a password-type one (3, 4) asks for a password, and here that is
/// exactly the password-type policy (its minimum length, 8, is the larger); any other pair asks
/// for both, and no policy asks for nothing more than the other.
pub(crate) fn valid_for_both(a: usize, b: usize, passcode: &str) -> bool {
    const PASSWORD_TYPES: [usize; 2] = [3, 4];
    let pin_type = |p: usize| p != NO_POLICY && !PASSWORD_TYPES.contains(&p);
    match (a, b) {
        (a, b) if pin_type(a) && PASSWORD_TYPES.contains(&b) => valid(b, passcode),
        (a, b) if pin_type(b) && PASSWORD_TYPES.contains(&a) => valid(a, passcode),
        (a, b) => valid(a, passcode) && valid(b, passcode),
    }
}

/// Gatekeeper's schedule, written out again: 30 s at 5 and 10 to 29 failures, doubling every
/// 10 from 30, one day from 140.
pub(crate) fn throttle_wait_ms(failures: u32) -> u64 {
    const WAIT: u64 = 30_000;
    match failures {
        5 | 10..=29 => WAIT,
        30..=139 => WAIT * 2u64.pow((failures - 30) / 10),
        140.. => DAY_MS,
        _ => 0,
    }
}
