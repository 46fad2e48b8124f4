//! Seeded load shapes, shared by the agent's fleets and the load test: SplitMix64, the one
//! generator every reproducible decision is drawn from, and the weighted lists of a generated
//! fleet, one parser for all three: `--mix` (enrollment types), `--android` (API levels) and
//! `--profile` (maker profiles).
//!
//! The generator is written out here rather than taken from a crate, so a seed recorded in an old
//! report reproduces the same fleet for as long as this file does not change, independent of any
//! dependency's version. Nothing secret is ever drawn from it.

use crate::device::{ApiLevel, Build, Ownership, Profile};
use crate::fleet::DeviceSpec;
use std::fmt;

/// SplitMix64's increment (the golden ratio in 64 bits).
pub const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijection that spreads every input bit over the output.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 (Steele, Lea, Flood 2014): a tiny, well-mixed, seeded generator; enough for
/// reproducible load shapes and simulated users.
#[derive(Clone, Debug)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The stream for one item (a device) of a seeded run. Seed and index are mixed so that
    /// neighbouring seeds or indices give unrelated streams, and an item's stream does not depend
    /// on how many items there are.
    pub fn for_index(seed: u64, index: usize) -> SplitMix64 {
        let mut rng = SplitMix64(seed ^ 0xD1B5_4A32_D192_ED03);
        let mixed = rng.next_u64() ^ (index as u64).wrapping_mul(GOLDEN_GAMMA);
        let mut rng = SplitMix64(mixed);
        rng.next_u64();
        rng
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(GOLDEN_GAMMA);
        mix64(self.0)
    }

    /// A value in `[0, bound)`; `bound` must be above 0. The modulo bias is below 2^-40 for the
    /// bounds used here, far under what a load shape can show.
    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    /// Uniform in [0, 1), with 53 bits of precision.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `len` characters drawn from `alphabet` (ASCII).
    pub fn string_from(&mut self, alphabet: &[u8], len: usize) -> String {
        (0..len)
            .map(|_| alphabet[self.below(alphabet.len() as u64) as usize] as char)
            .collect()
    }
}

/// What a weighted list picks among (an enrollment type, an API level, a maker profile), and how
/// its option names and parses it. One parser serves `--mix`, `--android` and `--profile`.
pub trait Choice: Copy + Eq + fmt::Display + 'static {
    /// The option that takes the list, for error messages: `--mix`.
    const OPTION: &'static str;
    /// What a part's key is, for error messages: `TYPE`.
    const KEY: &'static str;
    /// A part as an example: `byod=3`.
    const EXAMPLE: &'static str;
    /// The key, or a sentence naming what is wrong and what to use instead.
    fn parse_key(text: &str) -> Result<Self, String>;
    /// The weights when the option is not given.
    fn default_weights() -> Vec<(Self, u64)>;
}

impl Choice for Ownership {
    const OPTION: &'static str = "--mix";
    const KEY: &'static str = "TYPE";
    const EXAMPLE: &'static str = "byod=3";

    fn parse_key(text: &str) -> Result<Ownership, String> {
        Ownership::parse(text).ok_or_else(|| {
            format!("unknown enrollment type {text:?}; use cosu, cobo, cope, byod or aosp")
        })
    }

    /// Every enrollment type equally.
    fn default_weights() -> Vec<(Ownership, u64)> {
        Ownership::ALL.into_iter().map(|o| (o, 1)).collect()
    }
}

impl Choice for ApiLevel {
    const OPTION: &'static str = "--android";
    const KEY: &'static str = "API_LEVEL";
    const EXAMPLE: &'static str = "30=2";

    fn parse_key(text: &str) -> Result<ApiLevel, String> {
        text.parse()
    }

    /// The newest level only.
    fn default_weights() -> Vec<(ApiLevel, u64)> {
        vec![(ApiLevel::DEFAULT, 1)]
    }
}

impl Choice for Profile {
    const OPTION: &'static str = "--profile";
    const KEY: &'static str = "PROFILE";
    const EXAMPLE: &'static str = "short-keyguard=1";

    fn parse_key(text: &str) -> Result<Profile, String> {
        text.parse()
    }

    /// AOSP only.
    fn default_weights() -> Vec<(Profile, u64)> {
        vec![(Profile::default(), 1)]
    }
}

/// A weighted list, as `--mix cosu=1,cobo=2,byod=3`, `--android 26=1,30=2,34=3` or
/// `--profile aosp=3,short-keyguard=1`, in the order given. A key left out weighs 0; at least
/// one weight must be above 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weights<T> {
    weights: Vec<(T, u64)>,
}

/// Enrollment-type weights (`--mix`).
pub type Mix = Weights<Ownership>;
/// API-level weights (`--android`).
pub type AndroidMix = Weights<ApiLevel>;
/// Maker-profile weights (`--profile`).
pub type ProfileMix = Weights<Profile>;

/// The largest weight a list accepts: enough for any ratio, and sums stay far from overflow.
const MAX_WEIGHT: u64 = 1_000_000;

impl<T: Choice> Default for Weights<T> {
    fn default() -> Weights<T> {
        Weights {
            weights: T::default_weights(),
        }
    }
}

impl<T: Choice> std::str::FromStr for Weights<T> {
    type Err = String;

    fn from_str(text: &str) -> Result<Weights<T>, String> {
        let option = T::OPTION;
        let mut weights: Vec<(T, u64)> = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (key, weight) = part.split_once('=').ok_or_else(|| {
                format!(
                    "{option} part {part:?}: expected {}=WEIGHT, e.g. {}",
                    T::KEY,
                    T::EXAMPLE
                )
            })?;
            let choice =
                T::parse_key(key.trim()).map_err(|e| format!("{option} part {part:?}: {e}"))?;
            let weight: u64 = weight.trim().parse().map_err(|_| {
                format!(
                    "{option} part {part:?}: weight {weight:?} is not a whole number from 0 to {MAX_WEIGHT}"
                )
            })?;
            if weight > MAX_WEIGHT {
                return Err(format!(
                    "{option} part {part:?}: weight {weight} is above {MAX_WEIGHT}"
                ));
            }
            if weights.iter().any(|(c, _)| *c == choice) {
                return Err(format!("{option} part {part:?}: {choice} is listed twice"));
            }
            weights.push((choice, weight));
        }
        if weights.iter().all(|(_, w)| *w == 0) {
            return Err(format!(
                "{option} {text:?}: every weight is 0; give at least one {} a weight above 0",
                T::KEY
            ));
        }
        Ok(Weights { weights })
    }
}

impl<T: Choice> fmt::Display for Weights<T> {
    /// The canonical text, in the order the weights were given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(c, w)| format!("{c}={w}"))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl<T: Choice> Weights<T> {
    pub fn weight(&self, choice: T) -> u64 {
        self.weights
            .iter()
            .find(|(c, _)| *c == choice)
            .map_or(0, |(_, w)| *w)
    }

    /// Every key with a weight above 0, in the order given.
    pub fn choices(&self) -> impl Iterator<Item = T> + '_ {
        self.weights.iter().filter(|(_, w)| *w > 0).map(|(c, _)| *c)
    }

    /// One key drawn from `rng` in proportion to the weights.
    pub fn pick(&self, rng: &mut SplitMix64) -> T {
        let total: u64 = self.weights.iter().map(|(_, w)| w).sum();
        let mut pick = rng.below(total);
        for (choice, weight) in &self.weights {
            if pick < *weight {
                return *choice;
            }
            pick -= weight;
        }
        self.weights[0].0
    }

    /// `count` keys drawn one after another from a generator seeded with `seed`.
    pub fn draws(&self, count: usize, seed: u64) -> Vec<T> {
        let mut rng = SplitMix64::new(seed);
        (0..count).map(|_| self.pick(&mut rng)).collect()
    }

    /// The key of each of `n` items, by smooth weighted round robin rather than by draws: the
    /// counts match the weights as closely as whole items allow, and the keys are interleaved
    /// (so a rate-limited load test does not reset all devices of one type first).
    pub fn assign(&self, n: usize) -> Vec<T> {
        // Weights are at most MAX_WEIGHT, so the casts are exact.
        let total: i64 = self.weights.iter().map(|(_, w)| *w as i64).sum();
        let mut current = vec![0i64; self.weights.len()];
        (0..n)
            .map(|_| {
                for (c, (_, w)) in current.iter_mut().zip(&self.weights) {
                    *c += *w as i64;
                }
                let (best, _) = current
                    .iter()
                    .enumerate()
                    .max_by_key(|(i, c)| (**c, std::cmp::Reverse(*i)))
                    .expect("a weighted list has at least one key");
                current[best] -= total;
                self.weights[best].0
            })
            .collect()
    }
}

/// Mixed into the seed of the API-level draws of a generated fleet, so they are their own
/// stream: adding `--android` to a command line leaves the fleet's names and types alone.
const ANDROID_STREAM: u64 = 0x0A0D_501D_AB1E_0026;
/// The same for the maker-profile draws (`--profile`).
const PROFILE_STREAM: u64 = 0x0D0E_BE1A_F11E_0001;

impl Mix {
    /// `count` devices named `<type>-<index>` (index from 0, over the whole fleet, so names
    /// are unique), each type drawn from the weights by a generator seeded with `seed`, each
    /// device's API level and maker profile drawn from `android` and `profiles` by streams of
    /// their own: the same seed and lists give the same fleet.
    pub fn devices(
        &self,
        count: usize,
        seed: u64,
        android: &AndroidMix,
        profiles: &ProfileMix,
    ) -> Vec<DeviceSpec> {
        let types = self.draws(count, seed);
        let levels = android.draws(count, seed ^ ANDROID_STREAM);
        let makers = profiles.draws(count, seed ^ PROFILE_STREAM);
        types
            .into_iter()
            .zip(levels.into_iter().zip(makers))
            .enumerate()
            .map(|(index, (ownership, (api_level, profile)))| DeviceSpec {
                name: format!("{}-{index}", ownership.as_str()),
                ownership,
                build: Build { api_level, profile },
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_errors_name_the_bad_part() {
        let e = "cosu=1,phone=2".parse::<Mix>().unwrap_err();
        assert!(e.contains("\"phone=2\"") && e.contains("unknown"), "{e}");
        let e = "cosu=1,byod=x".parse::<Mix>().unwrap_err();
        assert!(e.contains("\"byod=x\""), "{e}");
        let e = "cosu".parse::<Mix>().unwrap_err();
        assert!(e.contains("TYPE=WEIGHT"), "{e}");
        let e = "cosu=0".parse::<Mix>().unwrap_err();
        assert!(e.contains("every weight is 0"), "{e}");
        let e = "cosu=1,cosu=2".parse::<Mix>().unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let e = "cosu=1000001".parse::<Mix>().unwrap_err();
        assert!(e.contains("above 1000000"), "{e}");
    }

    #[test]
    fn android_and_profile_lists_parse_with_the_same_rules() {
        let android: AndroidMix = "26=1, 30=2,34=3".parse().unwrap();
        assert_eq!(android.to_string(), "26=1,30=2,34=3");
        assert_eq!(android.weight(ApiLevel::new(30).unwrap()), 2);
        let e = "25=1".parse::<AndroidMix>().unwrap_err();
        assert!(
            e.contains("--android part \"25=1\"") && e.contains("from 26"),
            "{e}"
        );
        let e = "30".parse::<AndroidMix>().unwrap_err();
        assert!(e.contains("API_LEVEL=WEIGHT"), "{e}");
        let e = "30=1,30=2".parse::<AndroidMix>().unwrap_err();
        assert!(e.contains("twice"), "{e}");
        let profiles: ProfileMix = "aosp=3,short-keyguard=1".parse().unwrap();
        assert_eq!(profiles.choices().count(), 2);
        let e = "pixel=1".parse::<ProfileMix>().unwrap_err();
        assert!(
            e.contains("--profile part") && e.contains("unknown maker profile"),
            "{e}"
        );
        assert_eq!(AndroidMix::default().to_string(), "35=1");
        assert_eq!(ProfileMix::default().to_string(), "aosp=1");
    }

    #[test]
    fn builds_are_drawn_from_streams_of_their_own() {
        let mix = Mix::default();
        let plain = mix.devices(200, 9, &AndroidMix::default(), &ProfileMix::default());
        let android: AndroidMix = "26=1,31=1,35=1".parse().unwrap();
        let profiles: ProfileMix = "aosp=1,sticky-work-notification=1".parse().unwrap();
        let mixed = mix.devices(200, 9, &android, &profiles);
        let names = |specs: &[DeviceSpec]| -> Vec<String> {
            specs.iter().map(|s| s.name.clone()).collect()
        };
        assert_eq!(names(&plain), names(&mixed), "types and names do not move");
        for level in android.choices() {
            assert!(mixed.iter().any(|s| s.build.api_level == level), "{level}");
        }
        assert!(mixed.iter().any(|s| s.build.profile != Profile::default()));
        assert!(plain.iter().all(|s| s.build == Build::default()));
        let again = mix.devices(200, 9, &android, &profiles);
        assert!(mixed.iter().zip(&again).all(|(a, b)| a.build == b.build));
    }

    #[test]
    fn mix_assigns_in_proportion() {
        let mix: Mix = "cosu=3,byod=1,aosp=0".parse().unwrap();
        let kinds = mix.assign(8);
        assert_eq!(kinds.iter().filter(|o| **o == Ownership::Cosu).count(), 6);
        assert_eq!(kinds.iter().filter(|o| **o == Ownership::Byod).count(), 2);
    }

    #[test]
    fn a_mix_prints_as_it_parses() {
        let mix: Mix = "byod=3, cosu=1".parse().unwrap();
        assert_eq!(mix.to_string(), "byod=3,cosu=1");
        assert_eq!(mix.to_string().parse::<Mix>().unwrap(), mix);
    }

    #[test]
    fn streams_per_index_do_not_depend_on_each_other() {
        let a: Vec<u64> = (0..4)
            .map(|i| SplitMix64::for_index(7, i).next_u64())
            .collect();
        let b: Vec<u64> = (0..4)
            .map(|i| SplitMix64::for_index(7, i).next_u64())
            .collect();
        assert_eq!(a, b);
        assert_ne!(a[0], a[1]);
        assert_ne!(
            SplitMix64::for_index(7, 0).next_u64(),
            SplitMix64::for_index(8, 0).next_u64()
        );
    }
}
