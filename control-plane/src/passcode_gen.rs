//! The control plane's passcode generator: a uniformly random passcode that Android's
//! `PasswordMetrics` accepts under a given [`PasscodePolicy`].
//!
//! This is deliberately the control plane's own implementation, sharing no code with the device's
//! validator (the agent crate): the two are written from the same Android rules, so a disagreement
//! between them shows up as a failed reset in the end-to-end tests instead of being hidden by a
//! shared bug.
//!
//! How Android judges a credential (AOSP `PasswordMetrics`), and what we add:
//! * A PIN (types `Pin` and `NumericComplex`) is digits only. `NumericComplex`, and any PIN at
//!   MEDIUM or HIGH complexity, must not contain a sequence longer than 3: a run of repeated or
//!   equally spaced digits (1111, 1234, 4321, 2468).
//! * `Alphanumeric` needs at least one letter and one digit; `Complex` honours the minimum counts
//!   of letters, upper case, lower case, digits, symbols and non-letters, and we require at least
//!   one letter, digit and symbol there as Android's legacy COMPLEX defaults do.
//! * Required length is never below 4; HIGH needs a PIN of 8 or a password of 6, MEDIUM 4 and 4.
//! * We go further than Android where it costs nothing: a PIN is at least 6 digits (the Android
//!   Management API rejects shorter numeric passwords on Android 14), a password at least 8
//!   characters; no passcode of any type contains a sequence longer than 3 (as `PasswordMetrics`
//!   counts them, letters included); passwords avoid characters that are hard to tell apart when a
//!   help-desk operator reads one out (0/O, 1/l/I) and symbols that are hard to type or quote.
//!
//! Generation is exactly uniform over the passcodes of the chosen length that meet all of the
//! above: pick how many characters each class gets with probability proportional to how many
//! passcodes have those counts, arrange the classes with a uniform shuffle, draw each character
//! uniformly from its class, and reject the whole candidate if it contains a sequence. Every
//! random choice uses rejection sampling, so none is biased by a modulo.

use crate::model::{Complexity, PasscodePolicy, PasscodeType};
use crate::secret::Passcode;
use ring::rand::SecureRandom;
use zeroize::Zeroizing;

/// Android refuses longer passcodes.
pub const MAX_LENGTH: u32 = 16;
/// Shortest PIN we hand out (Android Management API, Android 14: numeric shorter than 6 is
/// INVALID_VALUE).
pub const MIN_PIN_LENGTH: u32 = 6;
/// Shortest password we hand out.
pub const MIN_PASSWORD_LENGTH: u32 = 8;
/// Android's `PasswordMetrics.MAX_ALLOWED_SEQUENCE`.
const MAX_SEQUENCE: usize = 3;

const PIN_DIGITS: &[u8] = b"0123456789";
/// No 0 or 1: they read like O, l and I.
const PASSWORD_DIGITS: &[u8] = b"23456789";
/// No I or O.
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
/// No l.
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
/// Printable ASCII on every Android keyboard's symbol page; no space, quotes, backquote,
/// backslash or `|` (looks like l), nothing that reads ambiguously aloud.
const SYMBOLS: &[u8] = b"!#$%&*+-=?@^_~";

/// Candidates rejected for containing a sequence before giving up. The rejection rate is a few
/// percent at worst, so reaching this means the policy admits (almost) no passcode.
const MAX_ATTEMPTS: u32 = 10_000;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GenerateError {
    #[error(
        "the passcode policy needs at least {needed} characters, more than Android's maximum of {MAX_LENGTH}"
    )]
    TooLong { needed: u32 },
    #[error("no passcode satisfying the policy was found")]
    Unsatisfiable,
    #[error("the system random number generator failed")]
    Random,
}

/// A new passcode that satisfies `policy`, drawn uniformly with `rng`.
pub fn generate(
    policy: &PasscodePolicy,
    rng: &dyn SecureRandom,
) -> Result<Passcode, GenerateError> {
    let plan = Plan::for_policy(policy)?;
    let mut random = RandomBytes::new(rng);
    let mut candidate = Zeroizing::new(vec![0u8; plan.length]);
    let mut classes = vec![0usize; plan.length];
    for _ in 0..MAX_ATTEMPTS {
        let counts = plan.pick_counts(&mut random)?;
        // The class of each position: counts laid out in order, then shuffled (Fisher–Yates), which
        // makes every arrangement of these counts equally likely.
        classes.clear();
        for (class, &count) in counts.iter().enumerate() {
            classes.extend(std::iter::repeat_n(class, count));
        }
        for i in (1..classes.len()).rev() {
            let j = random.below(i + 1)?;
            classes.swap(i, j);
        }
        for (slot, &class) in candidate.iter_mut().zip(classes.iter()) {
            let alphabet = plan.alphabets[class];
            *slot = alphabet[random.below(alphabet.len())?];
        }
        if max_sequence(&candidate) <= MAX_SEQUENCE {
            let text = String::from_utf8(candidate.to_vec()).map_err(|_| GenerateError::Random)?;
            return Ok(Passcode::new(text));
        }
    }
    Err(GenerateError::Unsatisfiable)
}

/// The passcode length `generate` uses for `policy`, or why none fits.
pub fn length_for(policy: &PasscodePolicy) -> Result<u32, GenerateError> {
    Plan::for_policy(policy).map(|plan| plan.length as u32)
}

/// Character classes, in the order of `Plan::alphabets` and `Plan::minimums`.
const UPPER_CLASS: usize = 0;
const LOWER_CLASS: usize = 1;
const DIGIT_CLASS: usize = 2;
const SYMBOL_CLASS: usize = 3;
const CLASSES: usize = 4;

/// What a policy asks for, reduced to a length and per-class counts.
struct Plan {
    length: usize,
    /// An empty alphabet means the class may not occur.
    alphabets: [&'static [u8]; CLASSES],
    minimums: [usize; CLASSES],
    min_letters: usize,
    min_non_letters: usize,
}

impl Plan {
    fn for_policy(policy: &PasscodePolicy) -> Result<Plan, GenerateError> {
        let numeric = matches!(
            policy.passcode_type,
            PasscodeType::Pin | PasscodeType::NumericComplex
        );
        let complexity_length = match (policy.complexity, numeric) {
            (Complexity::High, true) => 8,
            (Complexity::High, false) => 6,
            (Complexity::Medium, _) => 4,
            (Complexity::Low | Complexity::Unspecified, _) => 0,
        };
        let floor = if numeric {
            MIN_PIN_LENGTH
        } else {
            MIN_PASSWORD_LENGTH
        };
        let n = |v: u32| v as usize;
        let mut plan = Plan {
            length: 0,
            alphabets: [&[]; CLASSES],
            minimums: [0; CLASSES],
            min_letters: 0,
            min_non_letters: 0,
        };
        match policy.passcode_type {
            PasscodeType::Pin | PasscodeType::NumericComplex => {
                plan.alphabets[DIGIT_CLASS] = PIN_DIGITS;
            }
            PasscodeType::Alphanumeric => {
                plan.alphabets[UPPER_CLASS] = UPPER;
                plan.alphabets[LOWER_CLASS] = LOWER;
                plan.alphabets[DIGIT_CLASS] = PASSWORD_DIGITS;
                plan.min_letters = 1;
                plan.minimums[DIGIT_CLASS] = 1;
            }
            PasscodeType::Complex => {
                plan.alphabets = [UPPER, LOWER, PASSWORD_DIGITS, SYMBOLS];
                plan.minimums = [
                    n(policy.min_upper_case),
                    n(policy.min_lower_case),
                    n(policy.min_digits).max(1),
                    n(policy.min_symbols).max(1),
                ];
                plan.min_letters = n(policy.min_letters).max(1);
                plan.min_non_letters = n(policy.min_non_letters);
            }
        }
        let m = &plan.minimums;
        let letters = (m[UPPER_CLASS] + m[LOWER_CLASS]).max(plan.min_letters);
        let non_letters = (m[DIGIT_CLASS] + m[SYMBOL_CLASS]).max(plan.min_non_letters);
        let needed = [
            n(policy.min_length),
            4,
            complexity_length,
            n(floor),
            letters.saturating_add(non_letters),
        ]
        .into_iter()
        .max()
        .unwrap_or(0);
        if needed > n(MAX_LENGTH) {
            return Err(GenerateError::TooLong {
                needed: u32::try_from(needed).unwrap_or(u32::MAX),
            });
        }
        plan.length = needed;
        Ok(plan)
    }

    /// How many characters of each class, chosen with probability proportional to the number of
    /// passcodes that have exactly those counts.
    fn pick_counts(&self, random: &mut RandomBytes) -> Result<[usize; CLASSES], GenerateError> {
        let options = self.count_options();
        let total: u128 = options.iter().map(|(_, weight)| weight).sum();
        if total == 0 {
            return Err(GenerateError::Unsatisfiable);
        }
        let mut target = random.below_u128(total)?;
        for (counts, weight) in &options {
            if target < *weight {
                return Ok(*counts);
            }
            target -= weight;
        }
        Err(GenerateError::Unsatisfiable)
    }

    /// Every admissible split of the length over the classes, with how many passcodes have it:
    /// length! / (u! l! d! s!) · |U|^u · |L|^l · |D|^d · |S|^s. At most 73^16 < 2^100 in total,
    /// so `u128` cannot overflow.
    fn count_options(&self) -> Vec<([usize; CLASSES], u128)> {
        let n = self.length;
        let cap = |class: usize| {
            if self.alphabets[class].is_empty() {
                0
            } else {
                n
            }
        };
        let mut options = Vec::new();
        for u in self.minimums[UPPER_CLASS]..=cap(UPPER_CLASS).min(n) {
            for l in self.minimums[LOWER_CLASS]..=cap(LOWER_CLASS).min(n - u) {
                for d in self.minimums[DIGIT_CLASS]..=cap(DIGIT_CLASS).min(n - u - l) {
                    let s = n - u - l - d;
                    if s < self.minimums[SYMBOL_CLASS]
                        || s > cap(SYMBOL_CLASS)
                        || u + l < self.min_letters
                        || d + s < self.min_non_letters
                    {
                        continue;
                    }
                    let counts = [u, l, d, s];
                    let mut weight = multinomial(n, &counts);
                    for (class, &count) in counts.iter().enumerate() {
                        weight *= (self.alphabets[class].len() as u128).pow(count as u32);
                    }
                    options.push((counts, weight));
                }
            }
        }
        options
    }
}

/// n! / (k1! k2! ...), as a product of binomial coefficients (exact at every step).
fn multinomial(n: usize, parts: &[usize]) -> u128 {
    let mut result: u128 = 1;
    let mut remaining = n;
    for &k in parts {
        let mut binomial: u128 = 1;
        for i in 0..k {
            binomial = binomial * (remaining - i) as u128 / (i + 1) as u128;
        }
        result *= binomial;
        remaining -= k;
    }
    result
}

/// Android's `PasswordMetrics.maxLengthSequence`: the longest run of characters of one category
/// with a constant step, where a step may be at most 1 for letters, any size for digits, and 0
/// (repeats only) for symbols. A change of step ends one run and starts the next at the peak.
fn max_sequence(text: &[u8]) -> usize {
    fn category(c: u8) -> (u8, i32) {
        match c {
            b'a'..=b'z' => (0, 1),
            b'A'..=b'Z' => (1, 1),
            b'0'..=b'9' => (2, 10),
            _ => (3, 0),
        }
    }
    let Some(&first) = text.first() else {
        return 0;
    };
    let (mut cat, mut max_step) = category(first);
    let mut previous = first;
    let mut step = 0i32;
    let mut has_step = false;
    let mut longest = 0usize;
    let mut start = 0usize;
    for (current, &c) in text.iter().enumerate().skip(1) {
        let (c_cat, c_max_step) = category(c);
        let c_step = i32::from(c) - i32::from(previous);
        if c_cat != cat || c_step.abs() > max_step {
            longest = longest.max(current - start);
            start = current;
            has_step = false;
            cat = c_cat;
            max_step = c_max_step;
        } else {
            if has_step && c_step != step {
                longest = longest.max(current - start);
                start = current - 1;
            }
            step = c_step;
            has_step = true;
        }
        previous = c;
    }
    longest.max(text.len() - start)
}

/// Random bytes fetched from the RNG in blocks (one system call per block rather than per byte),
/// wiped when dropped since they determine the passcode.
struct RandomBytes<'a> {
    rng: &'a dyn SecureRandom,
    buffer: Zeroizing<[u8; 64]>,
    used: usize,
}

impl<'a> RandomBytes<'a> {
    fn new(rng: &'a dyn SecureRandom) -> RandomBytes<'a> {
        RandomBytes {
            rng,
            buffer: Zeroizing::new([0u8; 64]),
            used: 64,
        }
    }

    fn byte(&mut self) -> Result<u8, GenerateError> {
        if self.used == self.buffer.len() {
            self.rng
                .fill(self.buffer.as_mut())
                .map_err(|_| GenerateError::Random)?;
            self.used = 0;
        }
        let b = self.buffer[self.used];
        self.used += 1;
        Ok(b)
    }

    /// Uniform in `0..bound` for `1 <= bound <= 256`: bytes at or above the largest multiple of
    /// `bound` are rejected, so every result has the same number of preimages.
    fn below(&mut self, bound: usize) -> Result<usize, GenerateError> {
        debug_assert!((1..=256).contains(&bound));
        let limit = 256 - 256 % bound;
        loop {
            let b = usize::from(self.byte()?);
            if b < limit {
                return Ok(b % bound);
            }
        }
    }

    /// Uniform in `0..bound`: draw as many bits as `bound - 1` has and reject values too large
    /// (fewer than half are, on average).
    fn below_u128(&mut self, bound: u128) -> Result<u128, GenerateError> {
        debug_assert!(bound > 0);
        let bits = 128 - (bound - 1).leading_zeros();
        let mask = if bits == 128 {
            u128::MAX
        } else {
            (1u128 << bits) - 1
        };
        loop {
            let mut bytes = [0u8; 16];
            for b in &mut bytes {
                *b = self.byte()?;
            }
            let value = u128::from_le_bytes(bytes) & mask;
            if value < bound {
                return Ok(value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;
    use std::collections::HashSet;

    fn policy(passcode_type: PasscodeType, complexity: Complexity) -> PasscodePolicy {
        PasscodePolicy {
            passcode_type,
            min_length: 0,
            complexity,
            min_letters: 0,
            min_upper_case: 0,
            min_lower_case: 0,
            min_digits: 0,
            min_symbols: 0,
            min_non_letters: 0,
            max_failed_attempts_before_wipe: 0,
        }
    }

    const TYPES: [PasscodeType; 4] = [
        PasscodeType::Pin,
        PasscodeType::NumericComplex,
        PasscodeType::Alphanumeric,
        PasscodeType::Complex,
    ];
    const COMPLEXITIES: [Complexity; 4] = [
        Complexity::Unspecified,
        Complexity::Low,
        Complexity::Medium,
        Complexity::High,
    ];

    /// An independent checker of Android's rules, written from the AOSP description rather than
    /// from the generator: sequences are found by brute force over every window of 4.
    fn violations(policy: &PasscodePolicy, passcode: &str) -> Vec<String> {
        let mut problems = Vec::new();
        let chars: Vec<char> = passcode.chars().collect();
        let len = chars.len() as u32;
        let numeric = matches!(
            policy.passcode_type,
            PasscodeType::Pin | PasscodeType::NumericComplex
        );
        let count = |f: fn(&char) -> bool| chars.iter().filter(|c| f(c)).count() as u32;
        let upper = count(char::is_ascii_uppercase);
        let lower = count(char::is_ascii_lowercase);
        let digits = count(char::is_ascii_digit);
        let letters = upper + lower;
        let symbols = len - letters - digits;
        if chars.iter().any(|c| !(' '..='~').contains(c)) {
            problems.push("contains a character outside printable ASCII".into());
        }
        if len > 16 {
            problems.push(format!("too long: {len}"));
        }
        let mut min_len = policy.min_length.max(4);
        if numeric {
            min_len = min_len.max(6);
        } else {
            min_len = min_len.max(8);
        }
        match (policy.complexity, numeric) {
            (Complexity::High, true) => min_len = min_len.max(8),
            (Complexity::High, false) => min_len = min_len.max(6),
            _ => {}
        }
        if len < min_len {
            problems.push(format!("too short: {len} < {min_len}"));
        }
        // Windows of 4 characters of one kind with a constant step (Android's "sequence").
        let has_sequence = chars.windows(4).any(|w| {
            let kind = |c: char| {
                if c.is_ascii_lowercase() {
                    0
                } else if c.is_ascii_uppercase() {
                    1
                } else if c.is_ascii_digit() {
                    2
                } else {
                    3
                }
            };
            let k = kind(w[0]);
            if w.iter().any(|&c| kind(c) != k) {
                return false;
            }
            let step = w[1] as i32 - w[0] as i32;
            let max_step = [1, 1, 10, 0][k];
            step.abs() <= max_step && w.windows(2).all(|p| p[1] as i32 - p[0] as i32 == step)
        });
        if numeric {
            if digits != len {
                problems.push("a PIN with a non-digit".into());
            }
            let must_avoid = policy.passcode_type == PasscodeType::NumericComplex
                || matches!(policy.complexity, Complexity::Medium | Complexity::High);
            if must_avoid && has_sequence {
                problems.push("a PIN with a sequence".into());
            }
        } else {
            if letters < 1 {
                problems.push("no letter".into());
            }
            if digits < 1 {
                problems.push("no digit".into());
            }
            if passcode.contains(['0', 'O', '1', 'l', 'I']) {
                problems.push("an ambiguous character".into());
            }
            if passcode.contains([' ', '"', '\'', '`', '\\']) {
                problems.push("a hard-to-type character".into());
            }
        }
        if policy.passcode_type == PasscodeType::Alphanumeric && symbols > 0 {
            problems.push("a symbol in an alphanumeric password".into());
        }
        if policy.passcode_type == PasscodeType::Complex {
            let checks = [
                ("letters", letters, policy.min_letters),
                ("upper case", upper, policy.min_upper_case),
                ("lower case", lower, policy.min_lower_case),
                ("digits", digits, policy.min_digits),
                ("symbols", symbols, policy.min_symbols.max(1)),
                ("non-letters", digits + symbols, policy.min_non_letters),
            ];
            for (what, have, need) in checks {
                if have < need {
                    problems.push(format!("not enough {what}: {have} < {need}"));
                }
            }
        }
        // Stricter than Android on purpose: no sequence in any passcode we hand out.
        if has_sequence {
            problems.push("a sequence".into());
        }
        problems
    }

    fn check_many(policy: &PasscodePolicy) {
        let rng = SystemRandom::new();
        let mut seen = HashSet::new();
        for _ in 0..500 {
            let passcode = generate(policy, &rng).unwrap_or_else(|e| panic!("{policy:?}: {e}"));
            let problems = violations(policy, passcode.expose());
            assert!(
                problems.is_empty(),
                "{policy:?} produced {:?}: {problems:?}",
                passcode.expose()
            );
            seen.insert(passcode.expose().to_string());
        }
        assert!(
            seen.len() > 1,
            "{policy:?} always produced the same passcode"
        );
    }

    #[test]
    fn every_type_and_complexity_yields_valid_varied_passcodes() {
        for passcode_type in TYPES {
            for complexity in COMPLEXITIES {
                check_many(&policy(passcode_type, complexity));
            }
        }
    }

    #[test]
    fn minimum_counts_are_honoured() {
        let with = |f: fn(&mut PasscodePolicy)| {
            let mut p = policy(PasscodeType::Complex, Complexity::Unspecified);
            f(&mut p);
            p
        };
        let policies = [
            with(|p| p.min_upper_case = 3),
            with(|p| p.min_lower_case = 4),
            with(|p| p.min_digits = 5),
            with(|p| p.min_symbols = 4),
            with(|p| p.min_letters = 8),
            with(|p| p.min_non_letters = 7),
            with(|p| {
                p.min_upper_case = 2;
                p.min_lower_case = 2;
                p.min_digits = 2;
                p.min_symbols = 2;
                p.min_letters = 6;
                p.min_non_letters = 6;
            }),
            with(|p| {
                p.min_length = 16;
                p.min_digits = 14;
                p.min_symbols = 1;
                p.min_letters = 1;
            }),
            with(|p| {
                p.min_length = 12;
                p.complexity = Complexity::High;
            }),
        ];
        for p in &policies {
            check_many(p);
        }
        let mut alphanumeric = policy(PasscodeType::Alphanumeric, Complexity::High);
        alphanumeric.min_length = 10;
        check_many(&alphanumeric);
        let mut pin = policy(PasscodeType::NumericComplex, Complexity::Medium);
        pin.min_length = 16;
        check_many(&pin);
    }

    #[test]
    fn lengths_follow_the_floors_and_the_policy() {
        let len = |t, c, min_length| {
            let mut p = policy(t, c);
            p.min_length = min_length;
            length_for(&p).unwrap()
        };
        assert_eq!(len(PasscodeType::Pin, Complexity::Unspecified, 0), 6);
        assert_eq!(len(PasscodeType::Pin, Complexity::Low, 4), 6);
        assert_eq!(len(PasscodeType::NumericComplex, Complexity::High, 0), 8);
        assert_eq!(len(PasscodeType::Pin, Complexity::Medium, 10), 10);
        assert_eq!(len(PasscodeType::Alphanumeric, Complexity::High, 0), 8);
        assert_eq!(len(PasscodeType::Complex, Complexity::Unspecified, 13), 13);
        let mut p = policy(PasscodeType::Complex, Complexity::Unspecified);
        p.min_upper_case = 5;
        p.min_lower_case = 1;
        p.min_letters = 4;
        p.min_digits = 2;
        p.min_symbols = 2;
        p.min_non_letters = 5;
        assert_eq!(length_for(&p), Ok(11));
    }

    #[test]
    fn impossible_policies_are_refused() {
        let mut p = policy(PasscodeType::Pin, Complexity::Low);
        p.min_length = 17;
        assert_eq!(length_for(&p), Err(GenerateError::TooLong { needed: 17 }));
        let mut p = policy(PasscodeType::Complex, Complexity::High);
        p.min_letters = 10;
        p.min_non_letters = 7;
        let err = generate(&p, &SystemRandom::new()).unwrap_err();
        assert_eq!(err, GenerateError::TooLong { needed: 17 });
        assert!(err.to_string().contains("17"));
    }

    #[test]
    fn digits_of_pins_are_roughly_uniform() {
        let rng = SystemRandom::new();
        let p = policy(PasscodeType::Pin, Complexity::Low);
        let mut counts = [0u32; 10];
        for _ in 0..2_000 {
            for c in generate(&p, &rng).unwrap().expose().bytes() {
                counts[usize::from(c - b'0')] += 1;
            }
        }
        // 12,000 digits: 1,200 expected each; ±25% is far outside chance for a fair generator.
        for (digit, &n) in counts.iter().enumerate() {
            assert!((900..=1500).contains(&n), "digit {digit} seen {n} times");
        }
    }

    #[test]
    fn max_sequence_matches_androids_examples() {
        for (text, expected) in [
            ("", 0),
            ("1234", 4),
            ("1234abc", 4),
            ("aabc", 3),
            ("qwertyuio", 1),
            ("@ABC", 3),
            (";;;;", 4),
            ("2468", 4),
            ("9630", 4),
            ("1212", 2),
            ("4321", 4),
            ("5555", 4),
            ("12340", 4),
            ("ACEG", 1),
        ] {
            assert_eq!(max_sequence(text.as_bytes()), expected, "{text}");
        }
    }

    #[test]
    fn multinomial_is_exact() {
        assert_eq!(multinomial(4, &[2, 2]), 6);
        assert_eq!(multinomial(16, &[16]), 1);
        assert_eq!(multinomial(16, &[4, 4, 4, 4]), 63_063_000);
    }
}
