//! The protobuf codec every droidfleet service uses: prost encoding with small per-RPC buffers.
//!
//! Tonic's default codec allocates an 8 KiB encode buffer and an 8 KiB decode buffer for every
//! RPC up front. A device holds one Session stream for its whole life, so with the defaults
//! each connected device costs 16 KiB of buffers on each side before it says a word, more than
//! the whole per-device memory goal of 12 KiB on each side (README, Performance). Every
//! droidfleet message except a long admin listing fits in a few hundred bytes, and a larger one
//! only makes the buffer grow in steps.

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::ProstCodec;

/// Bytes each RPC's encode and decode buffers start with, and the step they grow by.
pub const RPC_BUFFER_BYTES: usize = 256;

/// Tonic's default: how much a stream decodes before it yields to the scheduler.
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

/// [`ProstCodec`] with [`RPC_BUFFER_BYTES`] buffers; named by `codec_path` in build.rs.
#[derive(Debug, Clone)]
pub struct SmallBufferCodec<T, U>(std::marker::PhantomData<(T, U)>);

impl<T, U> Default for SmallBufferCodec<T, U> {
    fn default() -> Self {
        SmallBufferCodec(std::marker::PhantomData)
    }
}

fn settings() -> BufferSettings {
    BufferSettings::new(RPC_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
}

impl<T, U> Codec for SmallBufferCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as Codec>::Encoder;
    type Decoder = <ProstCodec<T, U> as Codec>::Decoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstCodec::<T, U>::raw_encoder(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::raw_decoder(settings())
    }
}
