//! Error types of the contract: mapping, encoding, decoding and the built-in schemas.
//!
//! Every decode and encode error says whether retrying can help ([`Disposition`]): a registry
//! that cannot be reached, times out or answers 5xx/429 is retried; bytes that will never decode
//! (bad header, an id a working registry answers 404 for, a corrupt body, another record's
//! schema) are dead-lettered. Only the second kind may ever send a record to a dead-letter topic.

use thiserror::Error;

/// What a consumer should do with a record that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// A transient failure (e.g. the registry is unreachable): retry the same record later.
    Retry,
    /// A permanent failure: send the original bytes to the dead-letter topic and move on.
    DeadLetter,
}

/// An Avro value does not map to the domain type (or a domain value does not fit the schema).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MappingError {
    /// A field the schema requires is absent from the value.
    #[error("{record}: missing field `{field}`")]
    MissingField {
        /// Avro record name.
        record: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A field holds another Avro type than the schema says.
    #[error("{record}: field `{field}` is {found}, expected {expected}")]
    WrongType {
        /// Avro record name.
        record: &'static str,
        /// Field name (empty for the record itself).
        field: &'static str,
        /// Expected Avro type.
        expected: &'static str,
        /// Type found.
        found: String,
    },
    /// A number does not fit the domain type (e.g. a negative quantity).
    #[error("{record}: field `{field}` value {value} is out of range")]
    OutOfRange {
        /// Avro record name.
        record: &'static str,
        /// Field name.
        field: &'static str,
        /// The refused number.
        value: String,
    },
    /// A union branch index that this build does not know.
    #[error("{record}: union field `{field}` has unknown branch {index}")]
    UnknownBranch {
        /// Avro record name.
        record: &'static str,
        /// Field name.
        field: &'static str,
        /// Branch index.
        index: u32,
    },
    /// An enum symbol that this build does not know.
    #[error("{record}: field `{field}` has unknown symbol {symbol:?}")]
    UnknownSymbol {
        /// Avro record name.
        record: &'static str,
        /// Field name.
        field: &'static str,
        /// The symbol found.
        symbol: String,
    },
    /// A string that should be a UUID is not one.
    #[error("{record}: field `{field}` is not a UUID")]
    InvalidUuid {
        /// Avro record name.
        record: &'static str,
        /// Field name.
        field: &'static str,
    },
    /// A value the domain refuses (e.g. a malformed sku or order id).
    #[error("{record}: field `{field}` is invalid: {reason}")]
    Invalid {
        /// Avro record name.
        record: &'static str,
        /// Field name.
        field: &'static str,
        /// The domain's explanation.
        reason: String,
    },
}

/// The schemas compiled into this build could not be assembled; a defect of the build itself.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("built-in Avro schemas are broken: {0}")]
pub struct SchemaError(pub String);

/// Writing a record in the Confluent wire format failed.
#[derive(Debug, Error)]
pub enum EncodeError {
    /// Retried: the registry could not be reached, timed out, or answered anything but a schema
    /// id or a refusal of the schema (5xx, 429, 408, 401/403, a 404 from a wrong path).
    #[error("schema registry unavailable for subject {subject}: {reason}")]
    RegistryUnavailable {
        /// Subject whose schema id was looked up.
        subject: String,
        /// What failed.
        reason: String,
    },
    /// Permanent: the registry refused the schema (409 incompatible with the subject's history,
    /// 422 invalid).
    #[error("schema registry refused the schema of subject {subject}: {reason}")]
    RegistryRefused {
        /// Subject whose schema id was looked up.
        subject: String,
        /// The registry's explanation.
        reason: String,
    },
    /// The domain value cannot be expressed in the schema.
    #[error("cannot map value to Avro: {0}")]
    Mapping(#[from] MappingError),
    /// The Avro value does not validate against the schema; a defect of the mapping.
    #[error("Avro value does not fit schema {schema}: {source}")]
    Avro {
        /// Full name of the schema.
        schema: String,
        /// What apache-avro reported.
        #[source]
        source: apache_avro::Error,
    },
    /// The direct Avro writer and the schema-driven one disagree; a defect of the mapping.
    #[error("direct Avro encoding differs from the schema's for {schema}")]
    DirectEncoding {
        /// Full name of the schema.
        schema: String,
    },
    /// The built-in schemas are broken.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

impl EncodeError {
    /// True when retrying the same call may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, EncodeError::RegistryUnavailable { .. })
    }

    /// Retry transient failures; anything else is a defect or a refused schema.
    pub fn disposition(&self) -> Disposition {
        if self.is_transient() {
            Disposition::Retry
        } else {
            Disposition::DeadLetter
        }
    }
}

/// Reading a record in the Confluent wire format failed. Never a panic, whatever the bytes.
#[derive(Debug, Error)]
pub enum DecodeError {
    /// Fewer bytes than the 5-byte header (magic byte + schema id); includes empty values.
    #[error("record of {len} bytes is too short for the Confluent wire format (5-byte header)")]
    TooShort {
        /// Length received.
        len: usize,
    },
    /// The first byte is not the Confluent magic byte 0.
    #[error("wrong magic byte {found:#04x}, expected 0x00 (Confluent wire format)")]
    WrongMagicByte {
        /// The byte found.
        found: u8,
    },
    /// Dead-lettered: a working registry answered 404 / 40403 for the schema id in the header.
    #[error("schema id {id} is unknown to the schema registry")]
    UnknownSchemaId {
        /// Schema id from the header.
        id: u32,
    },
    /// Retried: the registry could not be reached, timed out, or answered with something that
    /// says nothing about the record (5xx, 429, 408, 401/403, a 404 without 40403, a garbled
    /// body). Never cached: the next call asks again.
    #[error("schema registry unavailable while fetching schema id {id}: {reason}")]
    RegistryUnavailable {
        /// Schema id from the header.
        id: u32,
        /// What failed.
        reason: String,
    },
    /// Dead-lettered: the registry answered with a schema that is not a usable Avro schema
    /// (another schema type, references, unparseable).
    #[error("schema registry returned no usable Avro schema for id {id}: {reason}")]
    RegistryRefused {
        /// Schema id from the header.
        id: u32,
        /// The registry's or parser's explanation.
        reason: String,
    },
    /// The writer schema is another record than expected, e.g. a payload of another context.
    #[error("schema id {id} is {found}, expected {expected}")]
    UnexpectedSchema {
        /// Schema id from the header.
        id: u32,
        /// Full name this decoder reads.
        expected: &'static str,
        /// Full name of the writer schema.
        found: String,
    },
    /// The Avro body is truncated or corrupt for its writer schema.
    #[error("body of schema id {id} is truncated or corrupt: {source}")]
    CorruptBody {
        /// Schema id from the header.
        id: u32,
        /// What apache-avro reported.
        #[source]
        source: apache_avro::Error,
    },
    /// Bytes remain after one complete record.
    #[error("{extra} trailing bytes after the record of schema id {id}")]
    TrailingBytes {
        /// Schema id from the header.
        id: u32,
        /// Bytes left over.
        extra: usize,
    },
    /// The record decoded but does not map to the domain.
    #[error("record of schema id {id} does not map to the domain: {source}")]
    Mapping {
        /// Schema id from the header.
        id: u32,
        /// What did not map.
        #[source]
        source: MappingError,
    },
    /// The built-in schemas are broken.
    #[error(transparent)]
    Schema(#[from] SchemaError),
}

impl DecodeError {
    /// A stable machine-readable kind, for dead-letter headers.
    pub fn kind(&self) -> &'static str {
        match self {
            DecodeError::TooShort { .. } => "decode.too_short",
            DecodeError::WrongMagicByte { .. } => "decode.wrong_magic_byte",
            DecodeError::UnknownSchemaId { .. } => "decode.unknown_schema_id",
            DecodeError::RegistryUnavailable { .. } => "decode.registry_unavailable",
            DecodeError::RegistryRefused { .. } => "decode.registry_refused",
            DecodeError::UnexpectedSchema { .. } => "decode.unexpected_schema",
            DecodeError::CorruptBody { .. } => "decode.corrupt_body",
            DecodeError::TrailingBytes { .. } => "decode.trailing_bytes",
            DecodeError::Mapping { .. } => "decode.mapping",
            DecodeError::Schema(_) => "decode.schema",
        }
    }

    /// True when retrying the same record may succeed (only registry outages).
    pub fn is_transient(&self) -> bool {
        matches!(self, DecodeError::RegistryUnavailable { .. })
    }

    /// Retry transient failures; dead-letter everything else.
    pub fn disposition(&self) -> Disposition {
        if self.is_transient() {
            Disposition::Retry
        } else {
            Disposition::DeadLetter
        }
    }
}
