//! Passcode policies and the validator a device applies to a new passcode, after Android's
//! `PasswordMetrics.validatePasswordMetrics` and `DevicePolicyManager` password quality.
//!
//! A passcode made only of digits is treated as a PIN and anything else as a password, the way
//! the lock screen's PIN pad and keyboard would enter them.
//!
//! What a store's new passcode must meet is a [`Requirement`]: the policy that applies to its
//! credential (for the device store, merged with a unified work profile's, as Android holds one
//! credential to every admin whose profile shares it), read through the device's Android
//! version (a complexity bucket is enforced from API level 31 only) and its maker (a lock screen
//! may cap the length below Android's 16).
//!
//! Where this follows the wire contract (`common.proto`) rather than AOSP to the letter:
//! * A policy of type PIN or numeric complex means the store uses a PIN, so a non-digit is an
//!   invalid character (AOSP would accept a password there).
//! * A PIN under an alphanumeric or complex policy is a weaker credential type (AOSP reports a
//!   digits-only *password* as lacking letters instead).

use serde::{Deserialize, Serialize};

use super::secret::Passcode;

/// Android never requires fewer characters (`LockPatternUtils.MIN_LOCK_PASSWORD_SIZE`), so a
/// smaller policy minimum acts as this one, and without any policy this is the only rule.
pub const MIN_PASSCODE_LENGTH: u32 = 4;
/// `DevicePolicyManager.MAX_PASSWORD_LENGTH` (16, a hidden constant): Android 12's
/// `PasswordMetrics.validatePasswordMetrics` refuses a longer PIN or password as `TOO_LONG`, with
/// or without a policy, and clamps a larger required length to it; SystemUI's own tests assert
/// that a PIN never exceeds 16 digits.
pub const MAX_PASSCODE_LENGTH: u32 = 16;
/// `PasswordMetrics.MAX_ALLOWED_SEQUENCE`: a repeating or ordered run longer than this is a
/// sequence (1111, 1234, 4321, 1357).
pub const MAX_ALLOWED_SEQUENCE: usize = 3;

/// The credential kind a policy requires, weakest first.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PasscodeType {
    /// No type requirement: any PIN or password.
    #[default]
    Unspecified,
    /// Digits only; sequences allowed.
    Pin,
    /// Digits only, no sequence longer than [`MAX_ALLOWED_SEQUENCE`].
    NumericComplex,
    /// At least one letter and one digit.
    Alphanumeric,
    /// The policy's minimum counts of letters, digits, symbols and so on.
    Complex,
}

/// Android's complexity buckets (`DevicePolicyManager.PASSWORD_COMPLEXITY_*`).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PasscodeComplexity {
    #[default]
    Unspecified,
    /// Any PIN or password of the minimum length.
    Low,
    /// A PIN without sequence of at least 4 digits, or a password of at least 4 characters.
    Medium,
    /// A PIN without sequence of at least 8 digits, or a password of at least 6 characters.
    High,
}

/// A store's passcode requirement, mirroring `droidfleet.v1.PasscodePolicy`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasscodePolicy {
    pub passcode_type: PasscodeType,
    pub min_length: u32,
    pub complexity: PasscodeComplexity,
    /// The `min_*` counts apply to [`PasscodeType::Complex`] only, as on Android.
    pub min_letters: u32,
    pub min_upper_case: u32,
    pub min_lower_case: u32,
    pub min_digits: u32,
    pub min_symbols: u32,
    pub min_non_letters: u32,
    /// Wipe the store after this many consecutive failed entries; 0 means never.
    pub max_failed_attempts_before_wipe: u32,
}

/// The first rule a passcode breaks, in the order Android checks them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyViolation {
    #[error("the passcode is shorter than {min} characters")]
    TooShort { min: u32 },
    #[error("the passcode is longer than {max} characters")]
    TooLong { max: u32 },
    #[error("the passcode contains characters the policy does not allow")]
    ContainsInvalidCharacters,
    #[error("the passcode has fewer than {min} {}", noun(*.min, "letter"))]
    NotEnoughLetters { min: u32 },
    #[error("the passcode has fewer than {min} upper-case {}", noun(*.min, "letter"))]
    NotEnoughUpperCase { min: u32 },
    #[error("the passcode has fewer than {min} lower-case {}", noun(*.min, "letter"))]
    NotEnoughLowerCase { min: u32 },
    #[error("the passcode has fewer than {min} {}", noun(*.min, "digit"))]
    NotEnoughDigits { min: u32 },
    #[error("the passcode has fewer than {min} {}", noun(*.min, "symbol"))]
    NotEnoughSymbols { min: u32 },
    #[error("the passcode has fewer than {min} {}", noun(*.min, "non-letter character"))]
    NotEnoughNonLetters { min: u32 },
    #[error("the passcode contains a repeating or ordered sequence such as 1111 or 1234")]
    ContainsSequence,
    #[error("the passcode is a PIN but the policy requires a password")]
    WeakCredentialType,
}

fn noun(n: u32, singular: &str) -> String {
    if n == 1 {
        singular.to_owned()
    } else {
        format!("{singular}s")
    }
}

impl PasscodePolicy {
    /// The weakest policy at least as strict as both, as `PasswordMetrics.merge` combines the
    /// admins whose requirements one credential must meet: the stronger type, the larger
    /// minimums and complexity, the strictest wipe limit. Counts apply to a complex policy only,
    /// so a PIN-type policy brings none.
    pub fn merged_with(&self, other: &PasscodePolicy) -> PasscodePolicy {
        // An alphanumeric policy's own demand, a letter and a digit, carries into a complex
        // merge as counts, as Android's quality maps to minimum metrics.
        let counts = |p: &PasscodePolicy| match p.passcode_type {
            PasscodeType::Complex => [
                p.min_letters,
                p.min_upper_case,
                p.min_lower_case,
                p.min_digits,
                p.min_symbols,
                p.min_non_letters,
            ],
            PasscodeType::Alphanumeric => [1, 0, 0, 1, 0, 0],
            _ => [0; 6],
        };
        let (a, b) = (counts(self), counts(other));
        let most = |i: usize| a[i].max(b[i]);
        let wipe = match (
            self.max_failed_attempts_before_wipe,
            other.max_failed_attempts_before_wipe,
        ) {
            (0, limit) | (limit, 0) => limit,
            (x, y) => x.min(y),
        };
        PasscodePolicy {
            passcode_type: self.passcode_type.max(other.passcode_type),
            min_length: self.min_length.max(other.min_length),
            complexity: self.complexity.max(other.complexity),
            min_letters: most(0),
            min_upper_case: most(1),
            min_lower_case: most(2),
            min_digits: most(3),
            min_symbols: most(4),
            min_non_letters: most(5),
            max_failed_attempts_before_wipe: wipe,
        }
    }
}

/// What a new passcode for one store must satisfy on one device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The policy that applies to the store's credential; `None` is Android's no-policy rule
    /// (any PIN or password of 4 to the maximum length).
    pub policy: Option<PasscodePolicy>,
    /// The policy's complexity bucket is enforced (API level 31 and later); before, the policy
    /// is enforced through its quality alone.
    pub complexity_enforced: bool,
    /// The longest passcode the lock screen takes: [`MAX_PASSCODE_LENGTH`] unless the maker caps
    /// it lower.
    pub max_length: u32,
}

impl Requirement {
    /// `policy` on the newest Android an AOSP build runs.
    pub fn newest(policy: Option<&PasscodePolicy>) -> Requirement {
        Requirement {
            policy: policy.cloned(),
            complexity_enforced: true,
            max_length: MAX_PASSCODE_LENGTH,
        }
    }

    /// The first rule `passcode` breaks, in the order Android checks them.
    pub fn check(&self, passcode: &Passcode) -> Result<(), PolicyViolation> {
        let text = passcode.expose();
        // Android's LockscreenCredential.hasInvalidChars: only printable ASCII can be typed.
        if !text.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
            return Err(PolicyViolation::ContainsInvalidCharacters);
        }
        let metrics = Metrics::of(text.as_bytes());
        let is_pin = metrics.non_numeric == 0;
        let policy = self.policy.clone().unwrap_or_default();
        let complexity = if self.complexity_enforced {
            policy.complexity
        } else {
            PasscodeComplexity::Unspecified
        };

        match policy.passcode_type {
            PasscodeType::Pin | PasscodeType::NumericComplex if !is_pin => {
                return Err(PolicyViolation::ContainsInvalidCharacters);
            }
            PasscodeType::Alphanumeric | PasscodeType::Complex if is_pin => {
                return Err(PolicyViolation::WeakCredentialType);
            }
            _ => {}
        }
        if metrics.length > self.max_length {
            return Err(PolicyViolation::TooLong {
                max: self.max_length,
            });
        }
        let bucket_min = match complexity {
            PasscodeComplexity::High if is_pin => 8,
            PasscodeComplexity::High => 6,
            PasscodeComplexity::Medium => 4,
            PasscodeComplexity::Low | PasscodeComplexity::Unspecified => 0,
        };
        let min_length = policy.min_length.max(bucket_min).clamp(
            MIN_PASSCODE_LENGTH,
            self.max_length.max(MIN_PASSCODE_LENGTH),
        );
        if metrics.length < min_length {
            return Err(PolicyViolation::TooShort { min: min_length });
        }

        let required = match policy.passcode_type {
            PasscodeType::Alphanumeric => Counts {
                letters: 1,
                digits: 1,
                ..Counts::default()
            },
            PasscodeType::Complex => Counts {
                letters: policy.min_letters,
                upper_case: policy.min_upper_case,
                lower_case: policy.min_lower_case,
                digits: policy.min_digits,
                symbols: policy.min_symbols,
                non_letters: policy.min_non_letters,
            },
            _ => Counts::default(),
        };
        let have = &metrics.counts;
        let checks = [
            (
                have.letters,
                required.letters,
                PolicyViolation::NotEnoughLetters {
                    min: required.letters,
                },
            ),
            (
                have.upper_case,
                required.upper_case,
                PolicyViolation::NotEnoughUpperCase {
                    min: required.upper_case,
                },
            ),
            (
                have.lower_case,
                required.lower_case,
                PolicyViolation::NotEnoughLowerCase {
                    min: required.lower_case,
                },
            ),
            (
                have.digits,
                required.digits,
                PolicyViolation::NotEnoughDigits {
                    min: required.digits,
                },
            ),
            (
                have.symbols,
                required.symbols,
                PolicyViolation::NotEnoughSymbols {
                    min: required.symbols,
                },
            ),
            (
                have.non_letters,
                required.non_letters,
                PolicyViolation::NotEnoughNonLetters {
                    min: required.non_letters,
                },
            ),
        ];
        if let Some((_, _, violation)) = checks.into_iter().find(|(have, need, _)| have < need) {
            return Err(violation);
        }

        // Numeric complex is a PIN quality; a medium or high bucket holds every credential,
        // password or PIN, to "no sequence longer than 3" (Android 12's `applyComplexity` lowers
        // `seqLength` for the bucket, and `comparePasswordMetrics` checks it for both).
        let forbids_sequence = (is_pin && policy.passcode_type == PasscodeType::NumericComplex)
            || complexity >= PasscodeComplexity::Medium;
        if forbids_sequence && max_sequence_length(text.as_bytes()) > MAX_ALLOWED_SEQUENCE {
            return Err(PolicyViolation::ContainsSequence);
        }
        Ok(())
    }
}

/// Checks `passcode` against `policy` as the newest Android on an AOSP build does; `None` is
/// Android's no-policy rule (any PIN or password of 4 to 16 printable characters).
pub fn validate(
    policy: Option<&PasscodePolicy>,
    passcode: &Passcode,
) -> Result<(), PolicyViolation> {
    Requirement::newest(policy).check(passcode)
}

#[derive(Default)]
struct Counts {
    letters: u32,
    upper_case: u32,
    lower_case: u32,
    digits: u32,
    symbols: u32,
    non_letters: u32,
}

struct Metrics {
    length: u32,
    non_numeric: u32,
    counts: Counts,
}

impl Metrics {
    fn of(bytes: &[u8]) -> Metrics {
        let mut metrics = Metrics {
            length: 0,
            non_numeric: 0,
            counts: Counts::default(),
        };
        for &b in bytes {
            metrics.length += 1;
            let c = &mut metrics.counts;
            match Category::of(b) {
                Category::Lower => {
                    c.letters += 1;
                    c.lower_case += 1;
                    metrics.non_numeric += 1;
                }
                Category::Upper => {
                    c.letters += 1;
                    c.upper_case += 1;
                    metrics.non_numeric += 1;
                }
                Category::Digit => {
                    c.digits += 1;
                    c.non_letters += 1;
                }
                Category::Symbol => {
                    c.symbols += 1;
                    c.non_letters += 1;
                    metrics.non_numeric += 1;
                }
            }
        }
        metrics
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Category {
    Lower,
    Upper,
    Digit,
    Symbol,
}

impl Category {
    fn of(b: u8) -> Category {
        match b {
            b'a'..=b'z' => Category::Lower,
            b'A'..=b'Z' => Category::Upper,
            b'0'..=b'9' => Category::Digit,
            _ => Category::Symbol,
        }
    }

    /// The largest step between neighbours that can still continue a run: letters must be
    /// adjacent, digits may step by any constant (1357), symbols may only repeat.
    fn max_step(self) -> i32 {
        match self {
            Category::Lower | Category::Upper => 1,
            Category::Digit => 10,
            Category::Symbol => 0,
        }
    }
}

/// `PasswordMetrics.maxLengthSequence`: the longest run of characters of one category that
/// repeat or change by a constant step.
fn max_sequence_length(bytes: &[u8]) -> usize {
    let Some(&first) = bytes.first() else {
        return 0;
    };
    let mut previous = first;
    let mut category = Category::of(first);
    let mut step = 0i32;
    let mut has_step = false;
    let mut longest = 0;
    let mut start = 0;
    for (current, &b) in bytes.iter().enumerate().skip(1) {
        let current_category = Category::of(b);
        let current_step = i32::from(b) - i32::from(previous);
        if current_category != category || current_step.abs() > category.max_step() {
            longest = longest.max(current - start);
            start = current;
            has_step = false;
            category = current_category;
        } else {
            if has_step && current_step != step {
                longest = longest.max(current - start);
                start = current - 1;
            }
            step = current_step;
            has_step = true;
        }
        previous = b;
    }
    longest.max(bytes.len() - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: &PasscodePolicy, passcode: &str) -> Result<(), PolicyViolation> {
        validate(Some(policy), &Passcode::new(passcode))
    }

    fn policy(passcode_type: PasscodeType, min_length: u32) -> PasscodePolicy {
        PasscodePolicy {
            passcode_type,
            min_length,
            ..PasscodePolicy::default()
        }
    }

    #[test]
    fn sequence_lengths_match_android_examples() {
        for (text, expected) in [
            ("", 0),
            ("1", 1),
            ("1234", 4),
            ("13579", 5),
            ("1234abc", 4),
            ("aabc", 3),
            ("qwertyuio", 1),
            ("@ABC", 3),
            (";;;;", 4),
            (":;<=>", 1),
            ("4321", 4),
            ("1111", 4),
            ("1470", 3),
        ] {
            assert_eq!(max_sequence_length(text.as_bytes()), expected, "{text}");
        }
    }

    #[test]
    fn no_policy_accepts_any_printable_credential_of_four_to_sixteen() {
        let none = |p: &str| validate(None, &Passcode::new(p));
        assert_eq!(none("123"), Err(PolicyViolation::TooShort { min: 4 }));
        assert_eq!(none(""), Err(PolicyViolation::TooShort { min: 4 }));
        assert_eq!(none("1111"), Ok(()));
        assert_eq!(none("abcd"), Ok(()));
        assert_eq!(none("a b!"), Ok(()));
        assert_eq!(none("0123456789abcdef"), Ok(()));
        assert_eq!(
            none("0123456789abcdefg"),
            Err(PolicyViolation::TooLong { max: 16 })
        );
        assert_eq!(
            none("abc\u{e9}"),
            Err(PolicyViolation::ContainsInvalidCharacters)
        );
        assert_eq!(
            none("abc\n"),
            Err(PolicyViolation::ContainsInvalidCharacters)
        );
    }

    #[test]
    fn min_length_never_below_four_and_clamped_to_max() {
        assert_eq!(
            check(&policy(PasscodeType::Pin, 2), "123"),
            Err(PolicyViolation::TooShort { min: 4 })
        );
        assert_eq!(check(&policy(PasscodeType::Pin, 2), "1234"), Ok(()));
        assert_eq!(
            check(&policy(PasscodeType::Pin, 6), "12345"),
            Err(PolicyViolation::TooShort { min: 6 })
        );
        assert_eq!(
            check(&policy(PasscodeType::Pin, 40), "123456789012345"),
            Err(PolicyViolation::TooShort { min: 16 })
        );
        assert_eq!(
            check(&policy(PasscodeType::Pin, 40), "1234567890123456"),
            Ok(())
        );
    }

    #[test]
    fn pin_types_reject_non_digits_and_pin_allows_sequences() {
        let pin = policy(PasscodeType::Pin, 4);
        assert_eq!(
            check(&pin, "12a4"),
            Err(PolicyViolation::ContainsInvalidCharacters)
        );
        assert_eq!(check(&pin, "1111"), Ok(()));
        assert_eq!(check(&pin, "1234"), Ok(()));
        let complex = policy(PasscodeType::NumericComplex, 4);
        assert_eq!(
            check(&complex, "12 4"),
            Err(PolicyViolation::ContainsInvalidCharacters)
        );
    }

    #[test]
    fn numeric_complex_rejects_sequences() {
        let p = policy(PasscodeType::NumericComplex, 4);
        for bad in ["1111", "1234", "4321", "1357", "90121111"] {
            assert_eq!(
                check(&p, bad),
                Err(PolicyViolation::ContainsSequence),
                "{bad}"
            );
        }
        for good in ["1123", "9182", "1470"] {
            assert_eq!(check(&p, good), Ok(()), "{good}");
        }
    }

    #[test]
    fn password_types_reject_a_pin() {
        assert_eq!(
            check(&policy(PasscodeType::Alphanumeric, 4), "1234"),
            Err(PolicyViolation::WeakCredentialType)
        );
        assert_eq!(
            check(&policy(PasscodeType::Complex, 4), "98765"),
            Err(PolicyViolation::WeakCredentialType)
        );
    }

    #[test]
    fn alphanumeric_needs_a_letter_and_a_digit() {
        let p = policy(PasscodeType::Alphanumeric, 6);
        assert_eq!(
            check(&p, "abcdef"),
            Err(PolicyViolation::NotEnoughDigits { min: 1 })
        );
        assert_eq!(
            check(&p, "1234!!"),
            Err(PolicyViolation::NotEnoughLetters { min: 1 })
        );
        assert_eq!(
            check(&p, "abc12"),
            Err(PolicyViolation::TooShort { min: 6 })
        );
        assert_eq!(check(&p, "abc123"), Ok(()));
    }

    #[test]
    fn complex_minimum_counts() {
        let p = PasscodePolicy {
            passcode_type: PasscodeType::Complex,
            min_length: 8,
            min_letters: 3,
            min_upper_case: 1,
            min_lower_case: 1,
            min_digits: 2,
            min_symbols: 1,
            min_non_letters: 4,
            ..PasscodePolicy::default()
        };
        assert_eq!(
            check(&p, "ab123456!"),
            Err(PolicyViolation::NotEnoughLetters { min: 3 })
        );
        assert_eq!(
            check(&p, "abc12345!"),
            Err(PolicyViolation::NotEnoughUpperCase { min: 1 })
        );
        assert_eq!(
            check(&p, "ABC12345!"),
            Err(PolicyViolation::NotEnoughLowerCase { min: 1 })
        );
        assert_eq!(
            check(&p, "Abcdefg1!"),
            Err(PolicyViolation::NotEnoughDigits { min: 2 })
        );
        assert_eq!(
            check(&p, "Abcde123"),
            Err(PolicyViolation::NotEnoughSymbols { min: 1 })
        );
        assert_eq!(
            check(&p, "Abcdef12!"),
            Err(PolicyViolation::NotEnoughNonLetters { min: 4 })
        );
        assert_eq!(check(&p, "Abc12!34"), Ok(()));
        assert_eq!(check(&p, "Ab1!"), Err(PolicyViolation::TooShort { min: 8 }));
    }

    #[test]
    fn counts_are_ignored_for_other_types() {
        let p = PasscodePolicy {
            passcode_type: PasscodeType::Alphanumeric,
            min_symbols: 3,
            min_upper_case: 2,
            ..PasscodePolicy::default()
        };
        assert_eq!(check(&p, "abc1"), Ok(()));
    }

    #[test]
    fn complexity_buckets() {
        let with = |complexity| PasscodePolicy {
            complexity,
            ..PasscodePolicy::default()
        };
        let low = with(PasscodeComplexity::Low);
        assert_eq!(check(&low, "1111"), Ok(()));
        assert_eq!(
            check(&low, "abc"),
            Err(PolicyViolation::TooShort { min: 4 })
        );

        let medium = with(PasscodeComplexity::Medium);
        assert_eq!(
            check(&medium, "1234"),
            Err(PolicyViolation::ContainsSequence)
        );
        assert_eq!(check(&medium, "1928"), Ok(()));
        assert_eq!(check(&medium, "abzd"), Ok(()));

        let high = with(PasscodeComplexity::High);
        assert_eq!(
            check(&high, "1928374"),
            Err(PolicyViolation::TooShort { min: 8 })
        );
        assert_eq!(check(&high, "19283746"), Ok(()));
        assert_eq!(
            check(&high, "19281111"),
            Err(PolicyViolation::ContainsSequence)
        );
        assert_eq!(
            check(&high, "abc12"),
            Err(PolicyViolation::TooShort { min: 6 })
        );
        assert_eq!(check(&high, "abc123"), Ok(()));
        // A larger explicit minimum still wins over the bucket's.
        let high_ten = PasscodePolicy {
            min_length: 10,
            ..high
        };
        assert_eq!(
            check(&high_ten, "abc123"),
            Err(PolicyViolation::TooShort { min: 10 })
        );
    }

    #[test]
    fn invalid_characters_win_over_everything_else() {
        let p = policy(PasscodeType::Complex, 8);
        assert_eq!(
            check(&p, "\u{1F600}"),
            Err(PolicyViolation::ContainsInvalidCharacters)
        );
    }

    /// Android 12's `PasswordMetrics.validatePasswordMetrics`: a medium or high complexity bucket
    /// lowers the allowed sequence to 3 for every credential (`applyComplexity`), and
    /// `comparePasswordMetrics` reports `CONTAINS_SEQUENCE` for a password as for a PIN.
    #[test]
    fn sequence_rule_covers_passwords_at_medium_and_high_complexity() {
        for complexity in [PasscodeComplexity::Medium, PasscodeComplexity::High] {
            let p = PasscodePolicy {
                passcode_type: PasscodeType::Alphanumeric,
                complexity,
                ..PasscodePolicy::default()
            };
            for bad in ["abcd1928", "zyxw1928", "aaaa1928", "ab1928!!!!"] {
                assert_eq!(
                    check(&p, bad),
                    Err(PolicyViolation::ContainsSequence),
                    "{bad} at {complexity:?}"
                );
            }
            assert_eq!(check(&p, "abzd1928"), Ok(()));
        }
        // Low complexity and a policy without a bucket allow sequences in passwords.
        let low = PasscodePolicy {
            passcode_type: PasscodeType::Alphanumeric,
            complexity: PasscodeComplexity::Low,
            ..PasscodePolicy::default()
        };
        assert_eq!(check(&low, "abcd1234"), Ok(()));
    }

    /// `setRequiredPasswordComplexity` exists from API level 31; before it the Android
    /// Management API applies quality-based settings only, so the bucket is not enforced.
    #[test]
    fn complexity_is_enforced_only_when_the_version_can() {
        let high_pin = PasscodePolicy {
            passcode_type: PasscodeType::Pin,
            min_length: 4,
            complexity: PasscodeComplexity::High,
            ..PasscodePolicy::default()
        };
        let newest = Requirement::newest(Some(&high_pin));
        let older = Requirement {
            complexity_enforced: false,
            ..newest.clone()
        };
        assert_eq!(
            newest.check(&Passcode::new("1928")),
            Err(PolicyViolation::TooShort { min: 8 })
        );
        assert_eq!(older.check(&Passcode::new("1928")), Ok(()));
        assert_eq!(older.check(&Passcode::new("1234")), Ok(()), "a PIN quality");
        let numeric_complex = Requirement {
            policy: Some(policy(PasscodeType::NumericComplex, 4)),
            complexity_enforced: false,
            max_length: MAX_PASSCODE_LENGTH,
        };
        assert_eq!(
            numeric_complex.check(&Passcode::new("1234")),
            Err(PolicyViolation::ContainsSequence),
            "numeric complex is a quality, enforced on every version"
        );
    }

    #[test]
    fn a_makers_lower_cap_refuses_longer_passcodes_and_caps_the_minimum() {
        let capped = Requirement {
            policy: Some(policy(PasscodeType::Alphanumeric, 8)),
            complexity_enforced: true,
            max_length: 6,
        };
        assert_eq!(
            capped.check(&Passcode::new("abzd1928")),
            Err(PolicyViolation::TooLong { max: 6 })
        );
        assert_eq!(capped.check(&Passcode::new("abz192")), Ok(()));
    }

    /// `PasswordMetrics.merge`: one credential meets every admin's requirement at once.
    #[test]
    fn merging_takes_the_stricter_of_each_requirement() {
        let device = PasscodePolicy {
            passcode_type: PasscodeType::Pin,
            min_length: 6,
            max_failed_attempts_before_wipe: 10,
            ..PasscodePolicy::default()
        };
        let work = PasscodePolicy {
            passcode_type: PasscodeType::Alphanumeric,
            min_length: 4,
            complexity: PasscodeComplexity::Medium,
            min_symbols: 3,
            max_failed_attempts_before_wipe: 0,
            ..PasscodePolicy::default()
        };
        let merged = device.merged_with(&work);
        assert_eq!(merged.passcode_type, PasscodeType::Alphanumeric);
        assert_eq!(merged.min_length, 6);
        assert_eq!(merged.complexity, PasscodeComplexity::Medium);
        assert_eq!(
            merged.min_symbols, 0,
            "counts come from complex policies only"
        );
        assert_eq!(merged.max_failed_attempts_before_wipe, 10);
        assert_eq!(merged, work.merged_with(&device));
    }

    #[test]
    fn too_long_applies_with_every_policy() {
        let p = policy(PasscodeType::Alphanumeric, 4);
        assert_eq!(
            check(&p, "abcdefgh123456789"),
            Err(PolicyViolation::TooLong { max: 16 })
        );
    }

    #[test]
    fn messages_name_the_rule() {
        assert_eq!(
            PolicyViolation::TooShort { min: 6 }.to_string(),
            "the passcode is shorter than 6 characters"
        );
        assert_eq!(
            PolicyViolation::NotEnoughDigits { min: 1 }.to_string(),
            "the passcode has fewer than 1 digit"
        );
        assert_eq!(
            PolicyViolation::NotEnoughUpperCase { min: 2 }.to_string(),
            "the passcode has fewer than 2 upper-case letters"
        );
    }

    #[test]
    fn policy_serde_round_trip() {
        let p = PasscodePolicy {
            passcode_type: PasscodeType::NumericComplex,
            min_length: 6,
            complexity: PasscodeComplexity::High,
            max_failed_attempts_before_wipe: 10,
            ..PasscodePolicy::default()
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains("\"numeric_complex\""), "{json}");
        assert_eq!(serde_json::from_str::<PasscodePolicy>(&json).unwrap(), p);
    }
}
