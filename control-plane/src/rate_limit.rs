//! Per-peer token buckets, the rule behind `--enroll-rate` and `--failed-auth-rate`: each peer
//! address may spend `burst` tokens at once, refilled at `per_second`; a peer with an empty bucket
//! is told how long until its next token. Plain rules: the caller gives the time.

use crate::limits::Rate;
use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// How many peers' buckets are kept at most. Past it, buckets that refilled to their burst (which
/// say nothing a new bucket would not) are dropped, and if that frees nothing, a new peer is
/// refused until some do: the table stays bounded however many addresses a flood comes from.
pub const MAX_PEERS: usize = 100_000;

/// How long until the peer has a token again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

/// A peer's bucket, in thousandths of a token so that a slow rate still refills every
/// millisecond without rounding to nothing.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    milli_tokens: u64,
    /// When `milli_tokens` was last brought up to date, in the caller's milliseconds.
    at_ms: u64,
}

/// The buckets of every peer seen lately, for one rate.
#[derive(Debug)]
pub struct PeerBuckets {
    rate: Rate,
    buckets: HashMap<IpAddr, Bucket>,
}

impl PeerBuckets {
    pub fn new(rate: Rate) -> PeerBuckets {
        PeerBuckets {
            rate,
            buckets: HashMap::new(),
        }
    }

    /// Whether `peer` has a token now, without spending it.
    pub fn check(&mut self, peer: IpAddr, now_ms: u64) -> Result<(), RetryAfter> {
        self.with_bucket(peer, now_ms, |_| ())
    }

    /// Spends one of `peer`'s tokens, if it has one.
    pub fn take(&mut self, peer: IpAddr, now_ms: u64) -> Result<(), RetryAfter> {
        self.with_bucket(peer, now_ms, |bucket| bucket.milli_tokens -= 1_000)
    }

    /// Peers with a bucket kept (for the bound's test).
    pub fn peers(&self) -> usize {
        self.buckets.len()
    }

    fn capacity(&self) -> u64 {
        u64::from(self.rate.burst) * 1_000
    }

    /// Brings `peer`'s bucket up to `now_ms` and runs `spend` on it when it holds a whole token.
    fn with_bucket(
        &mut self,
        peer: IpAddr,
        now_ms: u64,
        spend: impl FnOnce(&mut Bucket),
    ) -> Result<(), RetryAfter> {
        let peer = key(peer);
        let capacity = self.capacity();
        let per_second = u64::from(self.rate.per_second);
        if !self.buckets.contains_key(&peer) && self.buckets.len() >= MAX_PEERS {
            self.buckets
                .retain(|_, bucket| level(bucket, now_ms, per_second, capacity) < capacity);
            if self.buckets.len() >= MAX_PEERS {
                return Err(self.one_token());
            }
        }
        let bucket = self.buckets.entry(peer).or_insert(Bucket {
            milli_tokens: capacity,
            at_ms: now_ms,
        });
        bucket.milli_tokens = level(bucket, now_ms, per_second, capacity);
        bucket.at_ms = bucket.at_ms.max(now_ms);
        if bucket.milli_tokens >= 1_000 {
            spend(bucket);
            return Ok(());
        }
        let missing = 1_000 - bucket.milli_tokens;
        Err(RetryAfter(Duration::from_millis(
            missing.div_ceil(per_second.max(1)),
        )))
    }

    /// The wait for one token from empty.
    fn one_token(&self) -> RetryAfter {
        RetryAfter(Duration::from_millis(
            1_000u64.div_ceil(u64::from(self.rate.per_second.max(1))),
        ))
    }
}

/// The bucket's level at `now_ms`: `per_second` tokens a second is as many thousandths a
/// millisecond. A clock that went back refills nothing.
fn level(bucket: &Bucket, now_ms: u64, per_second: u64, capacity: u64) -> u64 {
    let elapsed = now_ms.saturating_sub(bucket.at_ms);
    bucket
        .milli_tokens
        .saturating_add(elapsed.saturating_mul(per_second))
        .min(capacity)
}

/// The address a bucket belongs to: an IPv4 address (also when mapped into IPv6), or an IPv6
/// address's /64 network, which one subscriber usually holds whole.
fn key(peer: IpAddr) -> IpAddr {
    match peer {
        IpAddr::V4(_) => peer,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(network.into())
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: Rate = Rate {
        per_second: 2,
        burst: 3,
    };

    fn peer(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn a_peer_spends_its_burst_then_waits_for_the_rate() {
        let mut buckets = PeerBuckets::new(RATE);
        for _ in 0..3 {
            assert_eq!(buckets.take(peer(1), 1_000), Ok(()));
        }
        assert_eq!(
            buckets.take(peer(1), 1_000),
            Err(RetryAfter(Duration::from_millis(500)))
        );
        // 2 a second: 200 ms give 0.4 of a token, 300 ms more the rest.
        assert_eq!(
            buckets.take(peer(1), 1_200),
            Err(RetryAfter(Duration::from_millis(300)))
        );
        assert_eq!(buckets.take(peer(1), 1_500), Ok(()));
        assert!(buckets.take(peer(1), 1_500).is_err());
    }

    #[test]
    fn peers_have_buckets_of_their_own() {
        let mut buckets = PeerBuckets::new(RATE);
        for _ in 0..3 {
            buckets.take(peer(1), 0).unwrap();
        }
        assert!(buckets.take(peer(1), 0).is_err());
        assert_eq!(buckets.take(peer(2), 0), Ok(()));
    }

    #[test]
    fn a_check_spends_nothing_and_a_long_pause_refills_only_the_burst() {
        let mut buckets = PeerBuckets::new(RATE);
        for _ in 0..10 {
            assert_eq!(buckets.check(peer(1), 0), Ok(()));
        }
        for _ in 0..3 {
            buckets.take(peer(1), 0).unwrap();
        }
        assert!(buckets.check(peer(1), 0).is_err());
        // An hour later: the burst again, not 7,200 tokens.
        for _ in 0..3 {
            buckets.take(peer(1), 3_600_000).unwrap();
        }
        assert!(buckets.take(peer(1), 3_600_000).is_err());
    }

    #[test]
    fn a_clock_that_goes_back_refills_nothing() {
        let mut buckets = PeerBuckets::new(RATE);
        for _ in 0..3 {
            buckets.take(peer(1), 10_000).unwrap();
        }
        assert!(buckets.take(peer(1), 5_000).is_err());
        assert!(buckets.take(peer(1), 10_000).is_err());
    }

    #[test]
    fn an_ipv6_subscriber_s_64_shares_one_bucket_and_a_mapped_ipv4_is_the_ipv4() {
        let mut buckets = PeerBuckets::new(RATE);
        let first: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let second: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let elsewhere: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        buckets.take(first, 0).unwrap();
        buckets.take(second, 0).unwrap();
        buckets.take(first, 0).unwrap();
        assert!(buckets.take(second, 0).is_err());
        assert_eq!(buckets.take(elsewhere, 0), Ok(()));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        for _ in 0..3 {
            buckets.take(mapped, 0).unwrap();
        }
        assert!(buckets.take(peer(7), 0).is_err());
    }

    #[test]
    fn the_table_stays_bounded_dropping_refilled_buckets_first() {
        let mut buckets = PeerBuckets::new(Rate {
            per_second: 1,
            burst: 1,
        });
        let address = |n: usize| IpAddr::from(u32::try_from(n).unwrap().to_be_bytes());
        for n in 0..MAX_PEERS {
            buckets.take(address(n), 0).unwrap();
        }
        // Every bucket is empty: a new peer is refused rather than the table grown.
        assert_eq!(
            buckets.take(address(MAX_PEERS), 0),
            Err(RetryAfter(Duration::from_secs(1)))
        );
        assert_eq!(buckets.peers(), MAX_PEERS);
        // A second later they have all refilled: dropped, and the new peer is served.
        assert_eq!(buckets.take(address(MAX_PEERS), 1_000), Ok(()));
        assert_eq!(buckets.peers(), 1);
    }
}
