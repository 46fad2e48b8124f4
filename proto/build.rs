//! Compiles the droidfleet.v1 protos with protox, so building needs no system `protoc`.

/// Keep in step with the `redacted_debug!` list in lib.rs.
const SECRET_MESSAGES: [&str; 11] = [
    "CreateEnrollmentTokenResponse",
    "ReEnrollDeviceResponse",
    "ResetPasscodeRequest",
    "RevealPasscodeResponse",
    "CreatePrincipalResponse",
    "EnrollRequest",
    "EscrowTokenUpdate",
    "ResetPasscodeCommand",
    "EnterPasscodeRequest",
    "SetPasscodeRequest",
    "SignedCommand",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/droidfleet/v1/common.proto",
        "proto/droidfleet/v1/gateway.proto",
        "proto/droidfleet/v1/admin.proto",
        "proto/droidfleet/v1/harness.proto",
        "proto/droidfleet/v1/echo.proto",
    ];
    let descriptors = protox::compile(files, ["proto"])?;
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("droidfleet_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    // Messages that carry a passcode, token or credential get a hand-written `Debug` (in
    // lib.rs) that prints `<redacted>` for it.
    let redacted = SECRET_MESSAGES.map(|name| format!(".droidfleet.v1.{name}"));
    tonic_prost_build::configure()
        .codec_path("crate::codec::SmallBufferCodec")
        .skip_debug(redacted)
        .compile_fds(descriptors)?;
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    Ok(())
}
