//! Message-level fault injection on device sessions: the decisions, without the I/O.
//!
//! A real fleet's links delay, duplicate and lose messages and break sessions mid-flight, and a
//! control plane that is only ever tested on a clean loopback never proves it copes: that it
//! redelivers in order after a reconnect, ignores a duplicate report, and never applies a command
//! twice. `--faults` lets the agent (and the load test) misbehave on purpose. Every decision comes
//! from a generator seeded by `--seed` and the device's index, so a failing run can be replayed
//! with the same faults at the same messages.
//!
//! This module only decides what happens to each message (`FaultDice::next`); the fleet's
//! session code (`fleet/session.rs`) carries it out.

use crate::seeded::{GOLDEN_GAMMA, mix64};
use std::fmt;
use std::str::FromStr;

/// Which way a session message travels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Direction {
    ToControlPlane,
    ToDevice,
}

/// What happens to one session message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FaultAction {
    Deliver,
    /// Held back this long, then delivered; later messages of the session wait behind it (a
    /// stream keeps order).
    Delay {
        ms: u32,
    },
    /// Delivered twice.
    Duplicate,
    /// Lost, and the session breaks with it (on a TCP stream a message is only ever lost with its
    /// connection).
    Drop,
    /// The session breaks before the message goes: a message to the control plane waits in the
    /// device's backlog for the next session; a message to the device is lost with the stream.
    Disconnect,
}

/// The delay bound when `delay=P` gives none.
const DEFAULT_DELAY_MAX_MS: u32 = 100;
/// A longer hold-up would look like a dead link rather than a slow one, which `disconnect`
/// already covers.
const MAX_DELAY_MAX_MS: u32 = 60_000;
/// Room for the rounding of decimal probabilities that add up to exactly 1 (`0.1,0.2,0.7`).
const SUM_TOLERANCE: f64 = 1e-9;

/// `--faults` of `droidfleet-agent run` and `droidfleet loadtest`, as
/// `delay=0.05:250ms,duplicate=0.01,drop=0.001,disconnect=0.002` or `none`.
///
/// Both directions share the probabilities. They add up to at most 1, because one draw per
/// message picks at most one fault. The seed is not part of the text (`--seed` sets it), so
/// `Display` then `FromStr` gives the same config with seed 0.
#[derive(Clone, Debug, PartialEq)]
pub struct FaultConfig {
    /// Probability that a message is held back (by a delay uniform in `[1, delay_max_ms]`).
    delay: f64,
    /// Probability that a message is delivered twice.
    duplicate: f64,
    /// Probability that a message is lost and its session broken.
    drop: f64,
    /// Probability that the session breaks just before a message.
    disconnect: f64,
    /// Upper bound of a delay, from 1 to 60000. Only meaningful while `delay` is above 0; it is
    /// kept at the default otherwise, so two configs that act alike compare equal.
    delay_max_ms: u32,
    /// Mixed with each device's index to seed that device's [`FaultDice`].
    seed: u64,
}

impl Default for FaultConfig {
    /// No faults.
    fn default() -> FaultConfig {
        FaultConfig {
            delay: 0.0,
            duplicate: 0.0,
            drop: 0.0,
            disconnect: 0.0,
            delay_max_ms: DEFAULT_DELAY_MAX_MS,
            seed: 0,
        }
    }
}

impl FaultConfig {
    /// Every probability is 0: the runtime skips fault handling entirely.
    pub(crate) fn is_none(&self) -> bool {
        self.delay == 0.0 && self.duplicate == 0.0 && self.drop == 0.0 && self.disconnect == 0.0
    }

    pub fn with_seed(self, seed: u64) -> FaultConfig {
        FaultConfig { seed, ..self }
    }

    /// The decision stream of the device at `device_index` (its place in the fleet, as for
    /// `Mix::devices`): the same config, seed and index give the same decisions.
    pub(crate) fn dice(&self, device_index: u64) -> FaultDice {
        FaultDice {
            to_control_plane: stream_start(self.seed, device_index, Direction::ToControlPlane),
            to_device: stream_start(self.seed, device_index, Direction::ToDevice),
        }
    }
}

impl FromStr for FaultConfig {
    type Err = String;

    fn from_str(text: &str) -> Result<FaultConfig, String> {
        let mut config = FaultConfig::default();
        if matches!(text.trim(), "" | "none") {
            return Ok(config);
        }
        let mut given: Vec<&str> = Vec::new();
        for part in text.split(',') {
            let part = part.trim();
            let (kind, value) = part.split_once('=').ok_or_else(|| {
                format!(
                    "--faults part {part:?}: expected KIND=PROBABILITY, e.g. drop=0.01 (or \"none\" alone)"
                )
            })?;
            let kind = kind.trim();
            let (probability, bound) = match value.split_once(':') {
                Some((p, b)) => (p.trim(), Some(b.trim())),
                None => (value.trim(), None),
            };
            let slot = match kind {
                "delay" => &mut config.delay,
                "duplicate" => &mut config.duplicate,
                "drop" => &mut config.drop,
                "disconnect" => &mut config.disconnect,
                _ => {
                    return Err(format!(
                        "--faults part {part:?}: unknown fault {kind:?}; use delay, duplicate, drop or disconnect"
                    ));
                }
            };
            if given.contains(&kind) {
                return Err(format!(
                    "--faults part {part:?}: {kind} is given more than once"
                ));
            }
            given.push(kind);
            let p: f64 = probability.parse().map_err(|_| {
                format!("--faults part {part:?}: probability {probability:?} is not a number")
            })?;
            // `contains` also refuses NaN.
            if !(0.0..=1.0).contains(&p) {
                return Err(format!(
                    "--faults part {part:?}: probability {p} is not between 0 and 1"
                ));
            }
            // Turns -0 into 0, so Display never shows it.
            *slot = p + 0.0;
            if let Some(bound) = bound {
                if kind != "delay" {
                    return Err(format!(
                        "--faults part {part:?}: only delay takes a bound (delay=PROBABILITY:MSms)"
                    ));
                }
                let ms = bound.strip_suffix("ms").unwrap_or(bound).trim();
                let ms: u32 = ms.parse().map_err(|_| {
                    format!(
                        "--faults part {part:?}: delay bound {bound:?} is not a whole number of milliseconds"
                    )
                })?;
                if !(1..=MAX_DELAY_MAX_MS).contains(&ms) {
                    return Err(format!(
                        "--faults part {part:?}: delay bound {ms} ms is not between 1 and {MAX_DELAY_MAX_MS} ms"
                    ));
                }
                config.delay_max_ms = ms;
            }
        }
        if config.delay == 0.0 {
            config.delay_max_ms = DEFAULT_DELAY_MAX_MS;
        }
        let sum = config.delay + config.duplicate + config.drop + config.disconnect;
        if sum > 1.0 + SUM_TOLERANCE {
            // Rounded, so 0.9 + 0.3 reads as 1.2 rather than 1.2000000000000002.
            let shown = (sum * 1e9).round() / 1e9;
            return Err(format!(
                "--faults {text:?}: the probabilities add up to {shown}; at most 1 (each message gets at most one fault)"
            ));
        }
        Ok(config)
    }
}

impl fmt::Display for FaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_none() {
            return f.write_str("none");
        }
        let mut parts = Vec::new();
        if self.delay > 0.0 {
            parts.push(format!("delay={}:{}ms", self.delay, self.delay_max_ms));
        }
        for (kind, p) in [
            ("duplicate", self.duplicate),
            ("drop", self.drop),
            ("disconnect", self.disconnect),
        ] {
            if p > 0.0 {
                parts.push(format!("{kind}={p}"));
            }
        }
        f.write_str(&parts.join(","))
    }
}

/// One device's seeded stream of fault decisions. It lives per device, so it is two words; the
/// config is passed to [`FaultDice::next`] rather than stored.
///
/// Each direction has its own stream: how the two directions interleave depends on timing, so
/// with one shared stream a replay could hand the same message a different fate. This way the
/// n-th message each way always gets the n-th decision of its direction.
#[derive(Clone, Debug)]
pub(crate) struct FaultDice {
    /// SplitMix64 state for messages to the control plane.
    to_control_plane: u64,
    /// SplitMix64 state for messages to the device.
    to_device: u64,
}

impl FaultDice {
    /// The fate of the next message travelling in `direction`. Exactly one draw per call, whatever
    /// the outcome, so a decision never shifts the ones after it.
    pub(crate) fn next(&mut self, config: &FaultConfig, direction: Direction) -> FaultAction {
        let state = match direction {
            Direction::ToControlPlane => &mut self.to_control_plane,
            Direction::ToDevice => &mut self.to_device,
        };
        *state = state.wrapping_add(GOLDEN_GAMMA);
        // The top 53 bits, as a uniform value in [0, 1) with every bit of an f64's mantissa.
        let u = (mix64(*state) >> 11) as f64 / (1u64 << 53) as f64;
        if u < config.delay {
            // Within the delay band, u / delay is itself uniform in [0, 1): it picks the length
            // without a second draw. The min guards the rounding of a u just below the band's top.
            let ms = 1 + (u / config.delay * f64::from(config.delay_max_ms)) as u32;
            return FaultAction::Delay {
                ms: ms.min(config.delay_max_ms),
            };
        }
        let mut top = config.delay;
        for (p, action) in [
            (config.duplicate, FaultAction::Duplicate),
            (config.drop, FaultAction::Drop),
            (config.disconnect, FaultAction::Disconnect),
        ] {
            top += p;
            if u < top {
                return action;
            }
        }
        FaultAction::Deliver
    }
}

/// Where one device's stream for one direction begins. Each step is a bijection, so for a given
/// seed no two devices share a start, and neighbouring seeds or indices give unrelated streams.
fn stream_start(seed: u64, device_index: u64, direction: Direction) -> u64 {
    let lane = match direction {
        Direction::ToControlPlane => 1,
        Direction::ToDevice => 2,
    };
    mix64(mix64(seed.wrapping_add(lane)).wrapping_add(device_index.wrapping_mul(GOLDEN_GAMMA)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> FaultConfig {
        text.parse()
            .unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn refusal(text: &str) -> String {
        match text.parse::<FaultConfig>() {
            Ok(config) => panic!("{text:?} should be refused, got {config:?}"),
            Err(e) => e,
        }
    }

    fn draws(config: &FaultConfig, index: u64, direction: Direction, n: usize) -> Vec<FaultAction> {
        let mut dice = config.dice(index);
        (0..n).map(|_| dice.next(config, direction)).collect()
    }

    #[test]
    fn good_specs_parse() {
        let c = parse("delay=0.05:250ms,duplicate=0.01,drop=0.001,disconnect=0.002");
        assert_eq!(
            c,
            FaultConfig {
                delay: 0.05,
                duplicate: 0.01,
                drop: 0.001,
                disconnect: 0.002,
                delay_max_ms: 250,
                seed: 0,
            }
        );
        assert_eq!(parse("delay=0.05:250").delay_max_ms, 250);
        assert_eq!(parse(" delay = 0.05 : 250 ms ").delay_max_ms, 250);
        assert_eq!(parse("delay=0.05").delay_max_ms, DEFAULT_DELAY_MAX_MS);
        assert_eq!(parse("delay=0.05:60000ms").delay_max_ms, 60_000);
        assert_eq!(parse("disconnect=0.1,drop=0.2").drop, 0.2);
        // Decimal rounding does not push an exact 1 over.
        assert_eq!(
            parse("duplicate=0.1,drop=0.2,disconnect=0.7").disconnect,
            0.7
        );
        assert_eq!(parse("drop=1").drop, 1.0);
        for none in ["none", "", " none ", "drop=0", "delay=0:250ms"] {
            let c = parse(none);
            assert!(c.is_none(), "{none:?}");
            assert_eq!(c, FaultConfig::default(), "{none:?}");
        }
        assert!(!parse("duplicate=0.001").is_none());
    }

    #[test]
    fn each_bad_spec_is_refused_naming_the_problem() {
        for (text, expected) in [
            (
                "dorp=0.1",
                r#"--faults part "dorp=0.1": unknown fault "dorp"; use delay, duplicate, drop or disconnect"#,
            ),
            (
                "drop=1.5",
                r#"--faults part "drop=1.5": probability 1.5 is not between 0 and 1"#,
            ),
            (
                "drop=-0.1",
                r#"--faults part "drop=-0.1": probability -0.1 is not between 0 and 1"#,
            ),
            (
                "drop=NaN",
                r#"--faults part "drop=NaN": probability NaN is not between 0 and 1"#,
            ),
            (
                "drop=often",
                r#"--faults part "drop=often": probability "often" is not a number"#,
            ),
            (
                "drop",
                r#"--faults part "drop": expected KIND=PROBABILITY, e.g. drop=0.01 (or "none" alone)"#,
            ),
            (
                "drop=0.1,",
                r#"--faults part "": expected KIND=PROBABILITY, e.g. drop=0.01 (or "none" alone)"#,
            ),
            (
                "none,drop=0.1",
                r#"--faults part "none": expected KIND=PROBABILITY, e.g. drop=0.01 (or "none" alone)"#,
            ),
            (
                "drop=0.1,drop=0.2",
                r#"--faults part "drop=0.2": drop is given more than once"#,
            ),
            (
                "delay=0.5,drop=0.7",
                r#"--faults "delay=0.5,drop=0.7": the probabilities add up to 1.2; at most 1 (each message gets at most one fault)"#,
            ),
            (
                "delay=0.9,drop=0.3",
                r#"--faults "delay=0.9,drop=0.3": the probabilities add up to 1.2; at most 1 (each message gets at most one fault)"#,
            ),
            (
                "delay=0.1:0ms",
                r#"--faults part "delay=0.1:0ms": delay bound 0 ms is not between 1 and 60000 ms"#,
            ),
            (
                "delay=0.1:60001ms",
                r#"--faults part "delay=0.1:60001ms": delay bound 60001 ms is not between 1 and 60000 ms"#,
            ),
            (
                "delay=0.1:1s",
                r#"--faults part "delay=0.1:1s": delay bound "1s" is not a whole number of milliseconds"#,
            ),
            (
                "drop=0.1:5ms",
                r#"--faults part "drop=0.1:5ms": only delay takes a bound (delay=PROBABILITY:MSms)"#,
            ),
        ] {
            assert_eq!(refusal(text), expected, "{text:?}");
        }
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "none",
            "delay=0.05:250ms",
            "delay=0.3:100ms,duplicate=0.1,drop=0.001,disconnect=0.0002",
            "duplicate=0.1",
            "disconnect=1",
        ] {
            let c = parse(text);
            assert_eq!(c.to_string(), text);
            assert_eq!(parse(&c.to_string()), c);
        }
        // The seed is not part of the text.
        let seeded = parse("drop=0.25").with_seed(42);
        assert_eq!(seeded.to_string(), "drop=0.25");
        assert_eq!(parse(&seeded.to_string()).with_seed(42), seeded);
        // Default bound and odd spellings come out in one canonical form.
        assert_eq!(
            parse(" drop=.5 , delay=0.1").to_string(),
            "delay=0.1:100ms,drop=0.5"
        );
        assert_eq!(FaultConfig::default().to_string(), "none");
    }

    #[test]
    fn same_seed_and_index_replay_the_same_decisions() {
        let c = parse("delay=0.1:50ms,duplicate=0.1,drop=0.1,disconnect=0.1").with_seed(7);
        for direction in [Direction::ToControlPlane, Direction::ToDevice] {
            let a = draws(&c, 3, direction, 1000);
            assert_eq!(a, draws(&c.clone(), 3, direction, 1000));
            assert_ne!(a, draws(&c, 4, direction, 1000), "another device");
            assert_ne!(
                a,
                draws(&c.clone().with_seed(8), 3, direction, 1000),
                "another seed"
            );
        }
        assert_ne!(
            draws(&c, 3, Direction::ToControlPlane, 1000),
            draws(&c, 3, Direction::ToDevice, 1000),
            "the directions have separate streams"
        );
    }

    #[test]
    fn one_direction_is_not_shifted_by_the_other() {
        let c = parse("delay=0.2:20ms,drop=0.2").with_seed(1);
        let alone = draws(&c, 0, Direction::ToDevice, 500);
        let mut dice = c.dice(0);
        let mut interleaved = Vec::new();
        for i in 0..500 {
            for _ in 0..i % 3 {
                dice.next(&c, Direction::ToControlPlane);
            }
            interleaved.push(dice.next(&c, Direction::ToDevice));
        }
        assert_eq!(alone, interleaved);
    }

    #[test]
    fn frequencies_match_the_probabilities() {
        let c = parse("delay=0.1:100ms,duplicate=0.1,drop=0.05,disconnect=0.2").with_seed(99);
        let n = 100_000;
        for direction in [Direction::ToControlPlane, Direction::ToDevice] {
            let mut counts = [0u32; 5];
            for action in draws(&c, 12, direction, n) {
                counts[match action {
                    FaultAction::Delay { .. } => 0,
                    FaultAction::Duplicate => 1,
                    FaultAction::Drop => 2,
                    FaultAction::Disconnect => 3,
                    FaultAction::Deliver => 4,
                }] += 1;
            }
            for (count, p) in counts.into_iter().zip([0.1, 0.1, 0.05, 0.2, 0.55]) {
                let seen = f64::from(count) / n as f64;
                assert!(
                    (seen - p).abs() < 0.01,
                    "{direction:?}: {seen} where {p} expected ({counts:?})"
                );
            }
        }
    }

    #[test]
    fn delays_stay_within_their_bound_and_reach_both_ends() {
        for bound in [1, 5, 250, 60_000] {
            let c = parse(&format!("delay=1:{bound}ms")).with_seed(u64::from(bound));
            let delays: Vec<u32> = draws(&c, 5, Direction::ToDevice, 20_000)
                .into_iter()
                .map(|action| match action {
                    FaultAction::Delay { ms } => ms,
                    other => panic!("delay=1 gave {other:?}"),
                })
                .collect();
            assert!(delays.iter().all(|ms| (1..=bound).contains(ms)), "{bound}");
            if bound <= 250 {
                assert!(delays.contains(&1), "{bound}: never 1 ms");
                assert!(delays.contains(&bound), "{bound}: never {bound} ms");
            }
        }
    }

    #[test]
    fn no_faults_always_deliver() {
        let c = FaultConfig::default().with_seed(5);
        assert!(c.is_none());
        for direction in [Direction::ToControlPlane, Direction::ToDevice] {
            assert!(
                draws(&c, 0, direction, 10_000)
                    .iter()
                    .all(|a| *a == FaultAction::Deliver)
            );
        }
    }

    #[test]
    fn dice_are_tiny() {
        assert!(std::mem::size_of::<FaultDice>() <= 16);
    }
}
