//! Secret values: zeroized on drop, printed as `<redacted>` by `Debug` and `Display`, so a
//! passcode or token cannot reach a log or an error message by accident.

use std::fmt;
use zeroize::Zeroizing;

/// A device passcode (PIN or password).
#[derive(Clone, PartialEq, Eq)]
pub struct Passcode(Zeroizing<String>);

impl Passcode {
    pub fn new(text: String) -> Passcode {
        Passcode(Zeroizing::new(text))
    }

    /// The passcode itself, for the few places that must send, seal or show it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// An escrow (reset-password) token.
#[derive(Clone, PartialEq, Eq)]
pub struct EscrowToken(Zeroizing<Vec<u8>>);

impl EscrowToken {
    /// Android refuses tokens shorter than this.
    pub const MIN_LEN: usize = 32;

    pub fn new(bytes: Vec<u8>) -> EscrowToken {
        EscrowToken(Zeroizing::new(bytes))
    }

    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

/// A bearer credential: a principal's token, an enrollment token or a device credential.
#[derive(Clone, PartialEq, Eq)]
pub struct BearerToken(Zeroizing<String>);

impl BearerToken {
    pub fn new(text: String) -> BearerToken {
        BearerToken(Zeroizing::new(text))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

macro_rules! redacted {
    ($($name:ident),*) => {$(
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("<redacted>")
            }
        }
    )*};
}

redacted!(Passcode, EscrowToken, BearerToken);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_print_redacted() {
        let passcode = Passcode::new("839201".into());
        let token = EscrowToken::new(vec![0xAB; 32]);
        let bearer = BearerToken::new("dfa_supersecret".into());
        let printed = format!("{passcode:?} {passcode} {token:?} {token} {bearer:?} {bearer}");
        assert!(!printed.contains("839201"));
        assert!(!printed.contains("supersecret"));
        assert!(!printed.to_lowercase().contains("ab, ab"));
        assert_eq!(printed.matches("<redacted>").count(), 6);
    }
}
