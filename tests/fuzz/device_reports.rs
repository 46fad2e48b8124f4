//! Device reports as the control plane's gateway receives them: a `DeviceMessage` off the wire,
//! converted and validated into a domain report (or, for a Hello, the stores it reports). Every
//! refusal must be INVALID_ARGUMENT naming a field, never a panic or an internal error.

use crate::driver::fuzz;
use droidfleet_control_plane::grpc::convert::{device_report_from_pb, hello_stores_from_pb};
use droidfleet_control_plane::service::DeviceReport;
use droidfleet_proto::v1 as pb;
use prost::Message;

fn seeds() -> Vec<Vec<u8>> {
    use pb::device_message::Body;
    let store = |scope: pb::CredentialScope| pb::StoreStatus {
        scope: scope as i32,
        has_passcode: true,
        locked: true,
        token_state: pb::TokenState::Active as i32,
        failed_attempts: 1,
        throttled_until_ms: 0,
        wiped: false,
        separate_challenge: true,
        require_entry: false,
        escrow_token_fingerprint: vec![1; 32],
    };
    let status = pb::DeviceStatus {
        stores: vec![
            store(pb::CredentialScope::Device),
            store(pb::CredentialScope::WorkProfile),
        ],
    };
    let bodies = [
        Body::Hello(pb::Hello {
            device_id: "dev-1".into(),
            agent_version: "droidfleet-agent 0.1.0".into(),
            status: Some(status.clone()),
            api_level: 34,
            maker_profile: "pixel".into(),
        }),
        Body::Status(status),
        Body::EscrowToken(pb::EscrowTokenUpdate {
            scope: pb::CredentialScope::WorkProfile as i32,
            token: vec![9; 32],
        }),
        Body::Ack(pb::CommandAck {
            command_id: "act-1".into(),
            traceparent: String::new(),
        }),
        Body::Result(pb::CommandResult {
            command_id: "act-1".into(),
            success: true,
            error_code: 0,
            reason: String::new(),
            completed_at_ms: 1_700_000_000_000,
            traceparent: String::new(),
        }),
        Body::Result(pb::CommandResult {
            command_id: "act-2".into(),
            success: false,
            error_code: pb::ErrorCode::TokenMismatch as i32,
            reason: "the escrow token does not match".into(),
            completed_at_ms: 1_700_000_000_000,
            traceparent: String::new(),
        }),
        Body::UserEvent(pb::UserEvent {
            kind: pb::user_event::Kind::NewPasscodeEntered as i32,
            command_id: "act-1".into(),
            scope: pb::CredentialScope::Device as i32,
            at_ms: 1_700_000_000_000,
        }),
        Body::UserEvent(pb::UserEvent {
            kind: pb::user_event::Kind::StoreWiped as i32,
            command_id: String::new(),
            scope: pb::CredentialScope::WorkProfile as i32,
            at_ms: 1_700_000_000_000,
        }),
        Body::PolicyRefusal(pb::PolicyRefusal {
            scope: pb::CredentialScope::Device as i32,
            version: 3,
            error_code: pb::ErrorCode::BadSignature as i32,
            reason: "the policy signature does not verify".into(),
        }),
    ];
    bodies
        .into_iter()
        .map(|body| pb::DeviceMessage { body: Some(body) }.encode_to_vec())
        .collect()
}

#[test]
fn device_reports() {
    fuzz("device_reports", seeds(), |input| {
        let Ok(message) = pb::DeviceMessage::decode(input) else {
            return "not a DeviceMessage".into();
        };
        let outcome = match message.body {
            Some(pb::device_message::Body::Hello(hello)) => {
                hello_stores_from_pb(&hello).map(|stores| format!("hello, {} stores", stores.len()))
            }
            _ => device_report_from_pb(message).map(|report| describe(&report)),
        };
        match outcome {
            Ok(label) => label,
            Err(error) => {
                let text = error.to_string();
                let status = tonic::Status::from(error);
                assert_eq!(status.code(), tonic::Code::InvalidArgument, "{text}");
                assert!(text.starts_with("invalid "), "names no field: {text}");
                format!("refused: {}", text.split(':').next().unwrap_or(&text))
            }
        }
    });
}

fn describe(report: &DeviceReport) -> String {
    match report {
        DeviceReport::Status(stores) => format!("status, {} stores", stores.len()),
        DeviceReport::EscrowToken { scope, .. } => format!("escrow token {scope:?}"),
        DeviceReport::Ack { .. } => "ack".into(),
        DeviceReport::Result { success, error, .. } => {
            // CP-RESULT-2: a result says exactly one thing.
            assert_eq!(*success, error.is_none(), "success and an error together");
            format!("result, error {:?}", error.as_ref().map(|(code, _)| code))
        }
        DeviceReport::NewPasscodeEntered { .. } => "new passcode entered".into(),
        DeviceReport::StoreWiped { scope } => format!("store wiped {scope:?}"),
        DeviceReport::PolicyRefused { code, .. } => format!("policy refused, {code:?}"),
    }
}
