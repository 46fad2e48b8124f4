//! The droidfleet.v1 protocol: generated messages, clients and servers, and the file descriptor
//! set for gRPC reflection. This is the only crate that knows protobuf.
#![forbid(unsafe_code)]

/// Package `droidfleet.v1`; see the `.proto` files under `proto/droidfleet/v1` for the contract.
pub mod v1 {
    tonic::include_proto!("droidfleet.v1");
}

/// Encoded `FileDescriptorSet` of every droidfleet.v1 file, for the gRPC reflection service.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/droidfleet_descriptor.bin"));
