//! Seeded load shapes, shared by the agent's fleets and the load test: SplitMix64, the one
//! generator every reproducible decision is drawn from, and `--mix`, the enrollment-type weights
//! of a generated fleet.
//!
//! The generator is written out here rather than taken from a crate, so a seed recorded in an old
//! report reproduces the same fleet for as long as this file does not change, independent of any
//! dependency's version. Nothing secret is ever drawn from it.

use crate::device::Ownership;
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

/// Enrollment-type weights, as `--mix cosu=1,cobo=2,cope=1,byod=3,aosp=0`, in the order given. A
/// type left out weighs 0; at least one weight must be above 0.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix {
    weights: Vec<(Ownership, u64)>,
}

/// The largest weight `--mix` accepts: enough for any ratio, and sums stay far from overflow.
const MAX_WEIGHT: u64 = 1_000_000;

impl Default for Mix {
    /// Every enrollment type equally.
    fn default() -> Mix {
        Mix {
            weights: Ownership::ALL.into_iter().map(|o| (o, 1)).collect(),
        }
    }
}

impl std::str::FromStr for Mix {
    type Err = String;

    fn from_str(text: &str) -> Result<Mix, String> {
        let mut weights: Vec<(Ownership, u64)> = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (kind, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("--mix part {part:?}: expected TYPE=WEIGHT, e.g. byod=3"))?;
            let ownership = Ownership::parse(kind.trim()).ok_or_else(|| {
                format!(
                    "--mix part {part:?}: unknown enrollment type {kind:?}; use cosu, cobo, cope, byod or aosp"
                )
            })?;
            let weight: u64 = weight.trim().parse().map_err(|_| {
                format!(
                    "--mix part {part:?}: weight {weight:?} is not a whole number from 0 to {MAX_WEIGHT}"
                )
            })?;
            if weight > MAX_WEIGHT {
                return Err(format!(
                    "--mix part {part:?}: weight {weight} is above {MAX_WEIGHT}"
                ));
            }
            if weights.iter().any(|(o, _)| *o == ownership) {
                return Err(format!(
                    "--mix part {part:?}: {} is listed twice",
                    ownership.as_str()
                ));
            }
            weights.push((ownership, weight));
        }
        if weights.iter().all(|(_, w)| *w == 0) {
            return Err(format!(
                "--mix {text:?}: every weight is 0; give at least one type a weight above 0"
            ));
        }
        Ok(Mix { weights })
    }
}

impl fmt::Display for Mix {
    /// The canonical `--mix` text, in the order the weights were given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .weights
            .iter()
            .map(|(o, w)| format!("{}={w}", o.as_str()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl Mix {
    pub fn weight(&self, ownership: Ownership) -> u64 {
        self.weights
            .iter()
            .find(|(o, _)| *o == ownership)
            .map_or(0, |(_, w)| *w)
    }

    /// `count` devices named `<type>-<index>` (index from 0, over the whole fleet, so names
    /// are unique), each type drawn from the weights by a generator seeded with `seed`: the same
    /// seed and mix give the same names and types.
    pub fn devices(&self, count: usize, seed: u64) -> Vec<DeviceSpec> {
        let total: u64 = self.weights.iter().map(|(_, w)| w).sum();
        let mut rng = SplitMix64::new(seed);
        (0..count)
            .map(|index| {
                let mut pick = rng.below(total);
                let mut ownership = self.weights[0].0;
                for (o, w) in &self.weights {
                    if pick < *w {
                        ownership = *o;
                        break;
                    }
                    pick -= w;
                }
                DeviceSpec {
                    name: format!("{}-{index}", ownership.as_str()),
                    ownership,
                }
            })
            .collect()
    }

    /// The enrollment type of each of `n` devices, by smooth weighted round robin rather than
    /// by draws: the counts match the weights as closely as whole devices allow, and the types
    /// are interleaved (so a rate-limited load test does not reset all devices of one type
    /// first).
    pub fn assign(&self, n: usize) -> Vec<Ownership> {
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
                    .expect("a mix has at least one type");
                current[best] -= total;
                self.weights[best].0
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
