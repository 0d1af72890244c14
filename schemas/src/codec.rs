//! The Confluent wire format: magic byte 0, the schema id as 4 big-endian bytes, the Avro body.
//!
//! [`Codec`] talks to the registry through schema_registry_converter (the encoder resolves and
//! caches each subject's schema id, the decoder fetches and caches writer schemas by id). Every
//! step after that is pure and lives in free functions — [`split_header`], [`encode_with_id`],
//! [`decode_with`], [`WriterSchema`] — so decoding can be tested on arbitrary bytes without a
//! registry.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Once, RwLock};
use std::time::Duration;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use schema_registry_converter::async_impl::avro::{AvroDecoder, AvroEncoder};
use schema_registry_converter::async_impl::schema_registry::SrSettings;
use schema_registry_converter::error::SRCError;
use schema_registry_converter::schema_registry_common::{
    SchemaType, SubjectNameStrategy, SuppliedSchema,
};

use crate::avro_binary;
use crate::contract::{datum_io, is_local_canonical, local_schema};
use crate::envelope::WireRecord;
use crate::error::{DecodeError, EncodeError, SchemaError};
use crate::topics::{Stream, Topics};

/// First byte of every Confluent-framed value.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte plus the 4-byte schema id.
pub const HEADER_LEN: usize = 5;
/// Largest single allocation the Avro reader may make for one string, bytes or collection.
///
/// Kafka records are far smaller; a corrupt length prefix must fail fast instead of reserving
/// hundreds of megabytes.
pub const MAX_ALLOCATION_BYTES: usize = 16 * 1024 * 1024;

fn limit_allocations() {
    static LIMIT: Once = Once::new();
    LIMIT.call_once(|| {
        apache_avro::util::max_allocation_bytes(MAX_ALLOCATION_BYTES);
    });
}

/// Splits a framed value into its schema id and Avro body.
pub fn split_header(bytes: &[u8]) -> Result<(u32, &[u8]), DecodeError> {
    match bytes {
        [MAGIC_BYTE, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [found, _, _, _, _, ..] => Err(DecodeError::WrongMagicByte { found: *found }),
        _ => Err(DecodeError::TooShort { len: bytes.len() }),
    }
}

/// Frames an Avro body: magic byte, schema id, body.
pub fn frame(schema_id: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Encodes a record under a known schema id, without any I/O.
pub fn encode_with_id<T: WireRecord>(schema_id: u32, record: &T) -> Result<Vec<u8>, EncodeError> {
    let value = record.to_avro()?;
    let mut out = Vec::with_capacity(128);
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&schema_id.to_be_bytes());
    let direct = avro_binary::write_value(&value, &mut out);
    // Debug builds (every test) encode each record both ways and insist on the same bytes,
    // which is what lets release builds trust the direct writer.
    if direct.is_err() || cfg!(debug_assertions) {
        let schema = || crate::contract::full_name(T::STREAM).to_owned();
        let (writer, _) = datum_io(T::STREAM)?;
        let mut checked = Vec::with_capacity(out.len());
        checked.extend_from_slice(&out[..HEADER_LEN]);
        writer
            .write_value_ref(&mut checked, &value)
            .map_err(|source| EncodeError::Avro {
                schema: schema(),
                source,
            })?;
        if direct.is_ok() && checked != out {
            return Err(EncodeError::DirectEncoding { schema: schema() });
        }
        out = checked;
    }
    Ok(out)
}

/// A writer schema fetched from the registry (or built locally), ready to decode with.
#[derive(Debug)]
pub struct WriterSchema {
    id: u32,
    full_name: String,
    /// Identical (by Parsing Canonical Form) to this build's schema of its stream: records
    /// decode with the prebuilt reader, without schema resolution.
    is_local: bool,
    schema: Schema,
}

impl WriterSchema {
    /// Wraps a parsed writer schema registered under `id`.
    pub fn new(id: u32, schema: Schema) -> Self {
        let full_name = schema
            .name()
            .map(|n| n.fullname(None))
            .unwrap_or_else(|| "<unnamed>".to_owned());
        let is_local = is_local_canonical(&schema.canonical_form());
        Self {
            id,
            full_name,
            is_local,
            schema,
        }
    }

    /// This build's own schema of a stream, as if registered under `id`.
    pub fn local(id: u32, stream: Stream) -> Result<Self, SchemaError> {
        Ok(Self::new(id, local_schema(stream)?.schema.clone()))
    }

    /// The registry id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// Full Avro name of the writer's top-level record.
    pub fn full_name(&self) -> &str {
        &self.full_name
    }
}

/// Decodes an Avro body written with `writer` into `T`, without any I/O.
///
/// The writer must be `T`'s record (same full name); its fields are resolved against this
/// build's schema, so records written by an older or newer compatible schema still decode.
pub fn decode_body<T: WireRecord>(writer: &WriterSchema, body: &[u8]) -> Result<T, DecodeError> {
    limit_allocations();
    let id = writer.id;
    let local = local_schema(T::STREAM)?;
    if writer.full_name != local.full_name {
        return Err(DecodeError::UnexpectedSchema {
            id,
            expected: local.full_name,
            found: writer.full_name.clone(),
        });
    }
    let corrupt = |source| DecodeError::CorruptBody { id, source };
    let mut cursor = Cursor::new(body);
    // The writer's schema is this build's own when its canonical form is one of ours and its
    // name is this stream's (checked above).
    let value = if writer.is_local {
        let (_, reader) = datum_io(T::STREAM)?;
        reader.read_value(&mut cursor).map_err(corrupt)?
    } else {
        GenericDatumReader::builder(&writer.schema)
            .reader_schema(&local.schema)
            .build()
            .and_then(|r| r.read_value(&mut cursor))
            .map_err(corrupt)?
    };
    let consumed = usize::try_from(cursor.position()).unwrap_or(usize::MAX);
    let extra = body.len().saturating_sub(consumed);
    if extra > 0 {
        return Err(DecodeError::TrailingBytes { id, extra });
    }
    T::from_avro(value).map_err(|source| DecodeError::Mapping { id, source })
}

/// Decodes a framed value, looking the writer schema up in `writers`, without any I/O.
pub fn decode_with<T: WireRecord>(
    bytes: &[u8],
    writers: impl Fn(u32) -> Option<Arc<WriterSchema>>,
) -> Result<T, DecodeError> {
    let (id, body) = split_header(bytes)?;
    let writer = writers(id).ok_or(DecodeError::UnknownSchemaId { id })?;
    decode_body(&writer, body)
}

/// The registry settings could not be built (e.g. a malformed URL).
#[derive(Debug, thiserror::Error)]
#[error("invalid schema registry settings for {url}: {reason}")]
pub struct RegistryConfigError {
    /// The URL given.
    pub url: String,
    /// What was wrong.
    pub reason: String,
}

/// Encodes and decodes every [`WireRecord`] in the Confluent wire format against a registry.
///
/// Cheap to share (`Arc<Codec>`): after the first record of a stream, encoding is a map lookup
/// plus the Avro write; decoding is a map lookup plus the Avro read.
pub struct Codec {
    topics: Topics,
    encoder: AvroEncoder,
    decoder: AvroDecoder,
    ids: RwLock<HashMap<Stream, u32>>,
    writers: RwLock<HashMap<u32, Arc<WriterSchema>>>,
    /// Looks schemas up by content when auto-registration is off.
    registry: crate::register::Registry,
    auto_register: bool,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("topics", &self.topics)
            .finish_non_exhaustive()
    }
}

/// Registry calls give up after this long, so a hung registry surfaces as a retryable error.
const REGISTRY_TIMEOUT: Duration = Duration::from_secs(10);

impl Codec {
    /// A codec for the streams named by `topics`, against the registry's Confluent API base URL
    /// (for Apicurio: `http://host:port/apis/ccompat/v7`).
    pub fn new(registry_url: &str, topics: Topics) -> Result<Self, RegistryConfigError> {
        let settings = |url: &str| {
            SrSettings::new_builder(url.to_owned())
                .set_timeout(REGISTRY_TIMEOUT)
                .build()
                .map_err(|e| RegistryConfigError {
                    url: url.to_owned(),
                    reason: e.to_string(),
                })
        };
        let url = registry_url.trim_end_matches('/');
        Ok(Self {
            topics,
            encoder: AvroEncoder::new(settings(url)?),
            decoder: AvroDecoder::new(settings(url)?),
            ids: RwLock::new(HashMap::new()),
            writers: RwLock::new(HashMap::new()),
            registry: crate::register::Registry::new(url).map_err(|e| RegistryConfigError {
                url: url.to_owned(),
                reason: e.to_string(),
            })?,
            auto_register: true,
        })
    }

    /// Whether a schema missing from its subject is registered on first use (the default, for
    /// development and tests) or only looked up, so that subjects get their first version from
    /// `register_all`, under the compatibility rule, and never from a producer.
    pub fn with_auto_register(mut self, auto_register: bool) -> Self {
        self.auto_register = auto_register;
        self
    }

    /// The topic names this codec encodes for.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// The registry id of this build's schema for `stream`, registered under the stream's
    /// subject if the registry does not have it yet and auto-registration is on (as Confluent
    /// serializers do by default); with it off, a schema missing from its subject is refused.
    pub async fn schema_id(&self, stream: Stream) -> Result<u32, EncodeError> {
        if let Some(id) = self
            .ids
            .read()
            .ok()
            .and_then(|ids| ids.get(&stream).copied())
        {
            return Ok(id);
        }
        let local = local_schema(stream)?;
        let topic = self.topics.topic(stream);
        let subject = self.topics.subject(stream);
        if !self.auto_register {
            let id = self
                .registry
                .lookup_id(&subject, &local.json)
                .await
                .map_err(|e| lookup_failed(&subject, e))?
                .ok_or_else(|| EncodeError::RegistryRefused {
                    subject: subject.clone(),
                    reason: "this schema is not registered under the subject and \
                             auto-registration is off (run `streamcart schemas register`)"
                        .to_owned(),
                })?;
            if let Ok(mut ids) = self.ids.write() {
                ids.insert(stream, id);
            }
            return Ok(id);
        }
        let supplied = SuppliedSchema::new(
            Some(local.full_name.to_owned()),
            SchemaType::Avro,
            local.json.clone(),
        );
        let strategy = SubjectNameStrategy::TopicNameStrategyWithSchema(topic, false, supplied);
        let registered = self
            .encoder
            .get_schema_and_id(&subject, strategy)
            .await
            .map_err(|e| {
                if e.retriable {
                    EncodeError::RegistryUnavailable {
                        subject: subject.clone(),
                        reason: describe(&e),
                    }
                } else {
                    EncodeError::RegistryRefused {
                        subject: subject.clone(),
                        reason: describe(&e),
                    }
                }
            })?;
        if let Ok(mut ids) = self.ids.write() {
            ids.insert(stream, registered.id);
        }
        Ok(registered.id)
    }

    /// Encodes like [`Codec::encode`] when the stream's schema id is already known, without a
    /// runtime; `None` when the registry has to be asked first.
    pub fn encode_known<T: WireRecord>(&self, record: &T) -> Option<Result<Vec<u8>, EncodeError>> {
        let id = self.ids.read().ok()?.get(&T::STREAM).copied()?;
        Some(encode_with_id(id, record))
    }

    /// Decodes like [`Codec::decode`] when the writer schema is already cached, without a
    /// runtime; `None` when the registry has to be asked first.
    pub fn decode_known<T: WireRecord>(&self, bytes: &[u8]) -> Option<Result<T, DecodeError>> {
        match split_header(bytes) {
            Err(e) => Some(Err(e)),
            Ok((id, body)) => {
                let writer = self.cached_writer(id)?;
                Some(decode_body(&writer, body))
            }
        }
    }

    /// Encodes a record for its stream's topic: `0x00`, schema id, Avro body.
    pub async fn encode<T: WireRecord>(&self, record: &T) -> Result<Vec<u8>, EncodeError> {
        let id = self.schema_id(T::STREAM).await?;
        encode_with_id(id, record)
    }

    /// The writer schema registered under `id`, fetched once and then served from memory.
    pub async fn writer_schema(&self, id: u32) -> Result<Arc<WriterSchema>, DecodeError> {
        if let Some(w) = self.cached_writer(id) {
            return Ok(w);
        }
        let fetched = self.decoder.get_schema(id).await.map_err(|e| {
            if e.retriable {
                DecodeError::RegistryUnavailable {
                    id,
                    reason: describe(&e),
                }
            } else if is_not_found(&e) {
                DecodeError::UnknownSchemaId { id }
            } else {
                DecodeError::RegistryRefused {
                    id,
                    reason: describe(&e),
                }
            }
        })?;
        let writer = Arc::new(WriterSchema::new(id, fetched.parsed.clone()));
        if let Ok(mut writers) = self.writers.write() {
            writers.insert(id, writer.clone());
        }
        Ok(writer)
    }

    fn cached_writer(&self, id: u32) -> Option<Arc<WriterSchema>> {
        self.writers.read().ok().and_then(|w| w.get(&id).cloned())
    }

    /// Decodes a framed value into `T`; fails with a typed error, never a panic.
    pub async fn decode<T: WireRecord>(&self, bytes: &[u8]) -> Result<T, DecodeError> {
        let (id, body) = split_header(bytes)?;
        let writer = self.writer_schema(id).await?;
        decode_body(&writer, body)
    }
}

fn lookup_failed(subject: &str, e: crate::register::RegisterError) -> EncodeError {
    if e.is_transient() {
        EncodeError::RegistryUnavailable {
            subject: subject.to_owned(),
            reason: e.to_string(),
        }
    } else {
        EncodeError::RegistryRefused {
            subject: subject.to_owned(),
            reason: e.to_string(),
        }
    }
}

fn describe(e: &SRCError) -> String {
    match &e.cause {
        Some(cause) => format!("{}: {cause}", e.error),
        None => e.error.clone(),
    }
}

/// Confluent answers an unknown id with HTTP 404 and error code 40403; so does Apicurio's ccompat API.
fn is_not_found(e: &SRCError) -> bool {
    e.error.contains("404")
        || e.cause
            .as_deref()
            .is_some_and(|c| c.contains("40403") || c.contains("not found"))
}
