//! Gatekeeper's throttling schedule (AOSP `system/gatekeeper/gatekeeper.cpp`,
//! `ComputeRetryTimeout`): how long a store refuses entries after a number of consecutive
//! failures.
//!
//! A refused entry is not checked and not counted, so waiting is the only way forward; this is
//! what makes guessing a 4-digit PIN take days instead of seconds.

const TIMEOUT_MS: u64 = 30_000;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

/// How long to wait after the `failures`-th consecutive failure.
pub fn wait_after_failures(failures: u32) -> u64 {
    match failures {
        0 => 0,
        5 | 10 => TIMEOUT_MS,
        1..=9 => 0,
        11..=29 => TIMEOUT_MS,
        30..=139 => TIMEOUT_MS << ((failures - 30) / 10),
        _ => DAY_MS,
    }
}

/// The first time an entry is accepted again after the last failure, or 0 when no wait applies.
pub(crate) fn throttled_until(failures: u32, last_failure_at_ms: u64) -> u64 {
    match wait_after_failures(failures) {
        0 => 0,
        wait => last_failure_at_ms.saturating_add(wait),
    }
}

/// `Some(until)` while an entry at `now_ms` must be refused.
pub(crate) fn active_throttle(failures: u32, last_failure_at_ms: u64, now_ms: u64) -> Option<u64> {
    let until = throttled_until(failures, last_failure_at_ms);
    (now_ms < until).then_some(until)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_band_edge() {
        for (failures, seconds) in [
            (0, 0),
            (1, 0),
            (4, 0),
            (5, 30),
            (6, 0),
            (9, 0),
            (10, 30),
            (11, 30),
            (29, 30),
            (30, 30),
            (39, 30),
            (40, 60),
            (49, 60),
            (50, 120),
            (139, 30 << 10),
            (140, 86_400),
            (u32::MAX, 86_400),
        ] {
            assert_eq!(
                wait_after_failures(failures),
                seconds * 1000,
                "{failures} failures"
            );
        }
    }

    #[test]
    fn throttle_window() {
        assert_eq!(throttled_until(4, 1_000), 0);
        assert_eq!(throttled_until(5, 1_000), 31_000);
        assert_eq!(active_throttle(5, 1_000, 30_999), Some(31_000));
        assert_eq!(active_throttle(5, 1_000, 31_000), None);
        assert_eq!(active_throttle(4, 1_000, 1_000), None);
        assert_eq!(throttled_until(140, u64::MAX - 1), u64::MAX);
    }
}
