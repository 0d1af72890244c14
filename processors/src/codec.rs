//! The codec from a loop thread, shared by the command processor, the saga and the catalog
//! copy.
//!
//! The transactional loops run on plain threads, outside the async runtime. Once a stream's
//! schema id (for encoding) or a writer schema (for decoding) is cached, the codec needs no
//! runtime at all, so these take that path and enter the runtime only when the registry must be
//! asked: the first record of a schema, or after the registry could not be reached.

use streamcart_kafka_runtime::HandleError;
use streamcart_schemas::codec::Codec;
use streamcart_schemas::envelope::WireRecord;
use streamcart_schemas::error::{DecodeError, Disposition};

/// Encodes a record from a loop thread; a registry that cannot be reached is a retry, anything
/// else about the record a dead letter.
pub fn encode_blocking<T: WireRecord>(
    rt: &tokio::runtime::Handle,
    codec: &Codec,
    record: &T,
) -> Result<Vec<u8>, HandleError> {
    let encoded = match codec.encode_known(record) {
        Some(done) => done,
        None => rt.block_on(codec.encode(record)),
    };
    encoded.map_err(|e| {
        if e.is_transient() {
            HandleError::Transient(e.to_string())
        } else {
            HandleError::permanent("encode.failed", e.to_string())
        }
    })
}

/// Decodes a record from a loop thread, entering the runtime only when the registry must be asked.
pub fn decode_blocking<T: WireRecord>(
    rt: &tokio::runtime::Handle,
    codec: &Codec,
    bytes: &[u8],
) -> Result<T, DecodeError> {
    match codec.decode_known(bytes) {
        Some(done) => done,
        None => rt.block_on(codec.decode(bytes)),
    }
}

/// Maps a decode failure to retry (registry unreachable) or dead letter (bad bytes).
pub fn decode_failure(e: DecodeError) -> HandleError {
    match e.disposition() {
        Disposition::Retry => HandleError::Transient(e.to_string()),
        Disposition::DeadLetter => HandleError::permanent(e.kind(), e.to_string()),
    }
}
