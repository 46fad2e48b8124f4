//! The control plane's passcode generator and the device's validator agree: every passcode the
//! control plane generates for a policy is one the simulated device accepts under that policy.
//!
//! The two sit on both sides of the protocol and share no code on purpose (a shared bug would
//! hide here and show up on real phones as failed resets), so each has its own policy type. This
//! test converts between them by hand, field by field, the way the two gRPC edges do through
//! `droidfleet.v1.PasscodePolicy`, and runs a grid of policies: every passcode type × every
//! complexity bucket × several minimum lengths, plus minimum counts for the complex type.

use droidfleet_agent::device::{self as agent, Passcode, policy};
use droidfleet_control_plane::model as cp;
use droidfleet_control_plane::passcode_gen::{self, GenerateError};
use ring::rand::SystemRandom;
use std::collections::HashSet;

/// Passcodes generated and checked per policy.
const PER_POLICY: usize = 300;

const TYPES: [cp::PasscodeType; 4] = [
    cp::PasscodeType::Pin,
    cp::PasscodeType::NumericComplex,
    cp::PasscodeType::Alphanumeric,
    cp::PasscodeType::Complex,
];

const COMPLEXITIES: [cp::Complexity; 4] = [
    cp::Complexity::Unspecified,
    cp::Complexity::Low,
    cp::Complexity::Medium,
    cp::Complexity::High,
];

/// Below Android's floor of 4, at it, between the buckets' lengths, and at the maximum of 16.
const MIN_LENGTHS: [u32; 7] = [0, 3, 4, 6, 8, 12, 16];

/// (letters, upper, lower, digits, symbols, non-letters) for the complex type: none, each count
/// alone, several together, and combinations that fill all 16 characters.
const COMPLEX_COUNTS: [[u32; 6]; 13] = [
    [0, 0, 0, 0, 0, 0],
    [3, 0, 0, 0, 0, 0],
    [0, 2, 0, 0, 0, 0],
    [0, 0, 3, 0, 0, 0],
    [0, 0, 0, 4, 0, 0],
    [0, 0, 0, 0, 3, 0],
    [0, 0, 0, 0, 0, 5],
    [4, 1, 1, 2, 1, 4],
    [6, 2, 2, 2, 2, 6],
    [1, 1, 0, 14, 1, 0],
    [8, 4, 4, 4, 4, 8],
    [2, 0, 0, 0, 0, 14],
    // 9 letters + 8 non-letters: more than Android's 16, so no passcode can satisfy it.
    [9, 4, 4, 4, 4, 8],
];

fn control_plane_policy(
    passcode_type: cp::PasscodeType,
    complexity: cp::Complexity,
    min_length: u32,
    counts: [u32; 6],
) -> cp::PasscodePolicy {
    let [letters, upper, lower, digits, symbols, non_letters] = counts;
    cp::PasscodePolicy {
        passcode_type,
        min_length,
        complexity,
        min_letters: letters,
        min_upper_case: upper,
        min_lower_case: lower,
        min_digits: digits,
        min_symbols: symbols,
        min_non_letters: non_letters,
        max_failed_attempts_before_wipe: 0,
    }
}

/// The control plane's policy as the device receives it. Exhaustive matches, so a new variant
/// on either side fails to compile here instead of being skipped silently.
fn device_policy(policy: &cp::PasscodePolicy) -> agent::PasscodePolicy {
    agent::PasscodePolicy {
        passcode_type: match policy.passcode_type {
            cp::PasscodeType::Pin => agent::PasscodeType::Pin,
            cp::PasscodeType::NumericComplex => agent::PasscodeType::NumericComplex,
            cp::PasscodeType::Alphanumeric => agent::PasscodeType::Alphanumeric,
            cp::PasscodeType::Complex => agent::PasscodeType::Complex,
        },
        min_length: policy.min_length,
        complexity: match policy.complexity {
            cp::Complexity::Unspecified => agent::PasscodeComplexity::Unspecified,
            cp::Complexity::Low => agent::PasscodeComplexity::Low,
            cp::Complexity::Medium => agent::PasscodeComplexity::Medium,
            cp::Complexity::High => agent::PasscodeComplexity::High,
        },
        min_letters: policy.min_letters,
        min_upper_case: policy.min_upper_case,
        min_lower_case: policy.min_lower_case,
        min_digits: policy.min_digits,
        min_symbols: policy.min_symbols,
        min_non_letters: policy.min_non_letters,
        max_failed_attempts_before_wipe: policy.max_failed_attempts_before_wipe,
    }
}

/// The characters a complex policy's counts demand at the least; the generator may refuse a
/// policy only when this exceeds Android's maximum length.
fn complex_demand(policy: &cp::PasscodePolicy) -> u32 {
    // The generator adds one letter, digit and symbol of its own to every complex passcode.
    let letters = (policy.min_upper_case + policy.min_lower_case)
        .max(policy.min_letters)
        .max(1);
    let non_letters =
        (policy.min_digits.max(1) + policy.min_symbols.max(1)).max(policy.min_non_letters);
    letters + non_letters
}

/// Generates [`PER_POLICY`] passcodes for `policy` and has the device validate each. Returns
/// how many distinct passcodes were seen, or `None` when the generator refused the policy.
fn check_policy(policy: &cp::PasscodePolicy, rng: &SystemRandom) -> Option<usize> {
    let on_device = device_policy(policy);
    let mut seen = HashSet::new();
    for _ in 0..PER_POLICY {
        let generated = match passcode_gen::generate(policy, rng) {
            Ok(passcode) => passcode,
            Err(GenerateError::TooLong { needed }) => {
                assert!(
                    needed > policy::MAX_PASSCODE_LENGTH,
                    "{policy:?}: refused as too long at {needed} characters"
                );
                assert!(
                    policy.passcode_type == cp::PasscodeType::Complex
                        && complex_demand(policy) > policy::MAX_PASSCODE_LENGTH,
                    "{policy:?}: refused although a passcode of at most 16 characters fits"
                );
                return None;
            }
            Err(e) => panic!("{policy:?}: the generator failed: {e}"),
        };
        // The two crates have separate secret types, as they have separate policy types.
        let text = generated.expose();
        let verdict = policy::validate(Some(&on_device), &Passcode::new(text));
        assert_eq!(
            verdict,
            Ok(()),
            "the device refuses {text:?}, generated by the control plane for {policy:?}"
        );
        seen.insert(text.to_owned());
    }
    Some(seen.len())
}

#[test]
fn every_generated_passcode_passes_the_device_validator_for_every_policy() {
    let rng = SystemRandom::new();
    let mut checked = 0;
    for passcode_type in TYPES {
        for complexity in COMPLEXITIES {
            for min_length in MIN_LENGTHS {
                let policy = control_plane_policy(passcode_type, complexity, min_length, [0; 6]);
                let distinct = check_policy(&policy, &rng)
                    .unwrap_or_else(|| panic!("{policy:?}: refused without minimum counts"));
                // A generator stuck on a few values would pass the validator and still be useless.
                assert!(
                    distinct > PER_POLICY / 2,
                    "{policy:?}: only {distinct} distinct passcodes in {PER_POLICY}"
                );
                checked += 1;
            }
        }
    }
    assert_eq!(
        checked,
        TYPES.len() * COMPLEXITIES.len() * MIN_LENGTHS.len()
    );
}

#[test]
fn complex_minimum_counts_agree() {
    let rng = SystemRandom::new();
    let mut checked = 0;
    let mut refused = 0;
    for counts in COMPLEX_COUNTS {
        for complexity in COMPLEXITIES {
            for min_length in [0, 8, 16] {
                let policy =
                    control_plane_policy(cp::PasscodeType::Complex, complexity, min_length, counts);
                match check_policy(&policy, &rng) {
                    Some(_) => checked += 1,
                    None => refused += 1,
                }
            }
        }
    }
    // Only the last set of counts asks for more than 16 characters (9 letters and 8
    // non-letters); every other policy must have been generated.
    assert_eq!(refused, COMPLEXITIES.len() * 3, "refused policies");
    assert_eq!(checked, (COMPLEX_COUNTS.len() - 1) * COMPLEXITIES.len() * 3);
}

/// The device rejects what breaks a policy the generator was given, so agreement above is not
/// the validator accepting everything.
#[test]
fn the_device_validator_is_not_vacuous_for_the_grid() {
    let cases: [(cp::PasscodeType, cp::Complexity, u32, &str); 6] = [
        (cp::PasscodeType::Pin, cp::Complexity::Low, 6, "12345"),
        (cp::PasscodeType::Pin, cp::Complexity::Low, 6, "12345a"),
        (
            cp::PasscodeType::NumericComplex,
            cp::Complexity::Unspecified,
            6,
            "123456",
        ),
        (cp::PasscodeType::Pin, cp::Complexity::High, 0, "9182736"),
        (
            cp::PasscodeType::Alphanumeric,
            cp::Complexity::Unspecified,
            8,
            "12345678",
        ),
        (
            cp::PasscodeType::Complex,
            cp::Complexity::Unspecified,
            8,
            "abcd2345",
        ),
    ];
    for (passcode_type, complexity, min_length, bad) in cases {
        let policy = control_plane_policy(passcode_type, complexity, min_length, [0; 6]);
        let on_device = device_policy(&policy);
        let complex = policy.passcode_type == cp::PasscodeType::Complex;
        let on_device = agent::PasscodePolicy {
            min_symbols: if complex { 1 } else { 0 },
            ..on_device
        };
        assert!(
            policy::validate(Some(&on_device), &Passcode::new(bad)).is_err(),
            "{bad:?} accepted under {on_device:?}"
        );
    }
}
