//! The droidfleet.v1 protocol: generated messages, clients and servers, and the file descriptor
//! set for gRPC reflection; what the control plane's key signs, what a device signs to open a
//! session, and the TLS every listener and client shares. This is the only crate that knows protobuf.
#![forbid(unsafe_code)]

pub mod codec;
pub mod identity;
pub mod signing;
pub mod tls;

/// Package `droidfleet.v1`; see the `.proto` files under `proto/droidfleet/v1` for the contract.
pub mod v1 {
    tonic::include_proto!("droidfleet.v1");
}

/// Encoded `FileDescriptorSet` of every droidfleet.v1 file, for the gRPC reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/droidfleet_descriptor.bin"));

/// Prints in place of a secret field.
struct Redacted;

impl std::fmt::Debug for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// `Debug` for messages with secret fields: the secrets print as `<redacted>`, so logging a
/// request, a response or a whole `ControlMessage` cannot leak a passcode or token.
macro_rules! redacted_debug {
    ($($message:ident { $($field:ident),* } secret { $($secret:ident),* })*) => {$(
        impl std::fmt::Debug for v1::$message {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($message))
                    $(.field(stringify!($field), &self.$field))*
                    $(.field(stringify!($secret), &Redacted))*
                    .finish()
            }
        }
    )*};
}

redacted_debug! {
    CreateEnrollmentTokenResponse { expires_at_ms, max_uses, group } secret { enrollment_token }
    ReEnrollDeviceResponse { device_id, expires_at_ms } secret { enrollment_token }
    ResetPasscodeRequest { device_id, scope, ttl_seconds } secret { new_passcode }
    RevealPasscodeResponse { action_id, visible_until_ms } secret { passcode }
    CreatePrincipalResponse { name } secret { bearer_token }
    EnrollRequest { ownership, display_name, device_public_key } secret { enrollment_token }
    EscrowTokenUpdate { scope } secret { token }
    ResetPasscodeCommand { scope, flags } secret { new_passcode, escrow_token }
    EnterPasscodeRequest { name, scope } secret { passcode }
    SetPasscodeRequest { name, scope } secret { current_passcode, new_passcode }
    // The body encodes the command, passcode and token included.
    SignedCommand { signature, key_id } secret { body }
}

#[cfg(test)]
mod tests {
    use super::v1;

    #[test]
    fn secret_fields_never_reach_debug_output() {
        let command = v1::ResetPasscodeCommand {
            scope: 1,
            new_passcode: "839201".into(),
            escrow_token: vec![0xAB; 32],
            flags: vec![1],
        };
        let message = v1::ControlMessage {
            body: Some(v1::control_message::Body::Command(v1::SignedCommand {
                body: prost::Message::encode_to_vec(&command),
                signature: vec![1, 2, 3],
                key_id: vec![4; 8],
            })),
        };
        let printed = format!(
            "{command:?} {message:?} {:?} {:?} {:?}",
            v1::EscrowTokenUpdate {
                scope: 1,
                token: b"escrow-token-bytes-0123456789abcdef".to_vec()
            },
            v1::RevealPasscodeResponse {
                action_id: "act_1".into(),
                passcode: "s3cretpass".into(),
                visible_until_ms: 1
            },
            v1::SetPasscodeRequest {
                name: "kiosk".into(),
                scope: 1,
                current_passcode: "oldpass1".into(),
                new_passcode: "newpass2".into()
            },
        );
        for secret in [
            "839201",
            "171, 171",
            "escrow-token",
            "s3cretpass",
            "oldpass1",
            "newpass2",
        ] {
            assert!(!printed.contains(secret), "{secret} leaked: {printed}");
        }
        assert!(
            printed.contains("<redacted>")
                && printed.contains("act_1")
                && printed.contains("kiosk")
        );
    }
}
