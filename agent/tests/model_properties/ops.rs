//! What the property test does to a device: the operations of a user, an admin (through its
//! control plane) and the device's own life, and the proptest strategy that draws them.

use droidfleet_agent::device::Scope;
use proptest::prelude::*;

use super::fixtures::{DAY_MS, PASSCODES};

#[derive(Clone, Debug)]
pub(crate) enum Current {
    Right,
    Other(usize),
    Missing,
}

#[derive(Clone, Debug)]
pub(crate) enum Entry {
    Right,
    Other(usize),
    /// Surely not the right one.
    Wrong,
}

#[derive(Clone, Debug)]
pub(crate) enum TokenChoice {
    /// The token the control plane holds for the store.
    Escrowed,
    /// A token escrowed earlier and replaced since.
    Stale(usize),
    /// A token the device never had.
    Random(u8),
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// The user enters a passcode on a store's lock screen.
    Enter {
        scope: Scope,
        entry: Entry,
    },
    /// Someone guesses: this many wrong entries in a row, which is what reaches throttles and
    /// wipe limits.
    Guess {
        scope: Scope,
        times: u32,
    },
    /// The user changes a passcode in the settings app.
    SetPasscode {
        scope: Scope,
        current: Current,
        new: usize,
    },
    Lock(Scope),
    /// A reboot; the management app then re-creates lost tokens, or not yet.
    Reboot {
        app_restores_tokens: bool,
    },
    /// The agent process restarts: the device comes back from its persisted state.
    Restart,
    EnsureTokens,
    /// The management app sets a token of its own (31 bytes is too short).
    SetToken {
        scope: Scope,
        byte: u8,
        short: bool,
    },
    /// The admin's reset, as the command carries it.
    Reset {
        scope: Scope,
        token: TokenChoice,
        new: usize,
        require_entry: bool,
        lock_now: bool,
    },
    Write {
        scope: Scope,
        key: usize,
        value: u8,
    },
    Read {
        scope: Scope,
        key: usize,
    },
    SetPolicy {
        scope: Scope,
        policy: usize,
    },
    /// Time passes: a second, past a 30 s throttle, or a day.
    Advance(u64),
}

fn scope() -> impl Strategy<Value = Scope> {
    prop_oneof![3 => Just(Scope::Device), 2 => Just(Scope::WorkProfile)]
}

fn passcode_index() -> impl Strategy<Value = usize> {
    0..PASSCODES.len()
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    let entry = prop_oneof![
        2 => Just(Entry::Right),
        1 => passcode_index().prop_map(Entry::Other),
    ];
    let current = prop_oneof![
        4 => Just(Current::Right),
        1 => passcode_index().prop_map(Current::Other),
        1 => Just(Current::Missing),
    ];
    let token = prop_oneof![
        4 => Just(TokenChoice::Escrowed),
        1 => any::<usize>().prop_map(TokenChoice::Stale),
        1 => any::<u8>().prop_map(TokenChoice::Random),
    ];
    prop_oneof![
        6 => (scope(), entry).prop_map(|(scope, entry)| Op::Enter { scope, entry }),
        2 => (scope(), 1..12u32).prop_map(|(scope, times)| Op::Guess { scope, times }),
        3 => (scope(), current, passcode_index())
            .prop_map(|(scope, current, new)| Op::SetPasscode { scope, current, new }),
        2 => scope().prop_map(Op::Lock),
        1 => any::<bool>().prop_map(|app_restores_tokens| Op::Reboot { app_restores_tokens }),
        1 => Just(Op::Restart),
        1 => Just(Op::EnsureTokens),
        1 => (scope(), any::<u8>(), prop::bool::weighted(0.2))
            .prop_map(|(scope, byte, short)| Op::SetToken { scope, byte, short }),
        5 => (scope(), token, passcode_index(), any::<bool>(), any::<bool>()).prop_map(
            |(scope, token, new, require_entry, lock_now)| Op::Reset {
                scope,
                token,
                new,
                require_entry,
                lock_now,
            }
        ),
        2 => (scope(), 0..3usize, any::<u8>())
            .prop_map(|(scope, key, value)| Op::Write { scope, key, value }),
        2 => (scope(), 0..3usize).prop_map(|(scope, key)| Op::Read { scope, key }),
        2 => (scope(), 0..6usize).prop_map(|(scope, policy)| Op::SetPolicy { scope, policy }),
        2 => prop_oneof![Just(1_000u64), Just(31_000), Just(DAY_MS)].prop_map(Op::Advance),
    ]
}
