//! The Confluent wire format: magic byte 0, the schema id as 4 big-endian bytes, the Avro body.
//!
//! [`Codec`] asks the registry's Confluent API for two things: a subject's schema id (registering
//! this build's schema, as Confluent serializers do) and a writer schema by id. Only answers are
//! remembered; a failed call is never cached, so a registry that answered 500 once is asked again
//! for the next record. What an answer means for the record is decided by pure functions —
//! [`classify_answer`], [`writer_from_answer`], [`id_from_answer`] — and so is every step after
//! it — [`split_header`], [`encode_with_id`], [`decode_with`], [`WriterSchema`] — so both can be
//! tested on arbitrary input without a registry.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Once, RwLock};

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use serde_json::Value as Json;

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

/// What a registry's HTTP answer means for the record that needed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryAnswer {
    /// A 2xx: the answer carries what was asked for.
    Answered,
    /// A 404 with Confluent error code 40403: a working registry has no schema under the id,
    /// and never will (ids are not reused).
    SchemaNotFound,
    /// A 409 (incompatible with the subject's history) or 422 (invalid schema): the registry
    /// refuses this build's schema, and will again.
    SchemaRefused,
    /// Anything else says nothing about the record: 5xx, 429, 408, 401/403, a 404 without
    /// 40403 (a wrong path or a proxy), other statuses. Retry later.
    Unavailable,
}

/// Classifies a registry answer by HTTP status and the Confluent `error_code` of its body.
pub fn classify_answer(status: u16, error_code: Option<i64>) -> RegistryAnswer {
    match (status, error_code) {
        (200..=299, _) => RegistryAnswer::Answered,
        (404, Some(40403)) => RegistryAnswer::SchemaNotFound,
        (409, _) | (422, _) => RegistryAnswer::SchemaRefused,
        _ => RegistryAnswer::Unavailable,
    }
}

/// The Confluent error code and message of an error body, if it has them.
fn error_details(body: &Json) -> (Option<i64>, String) {
    let code = body.get("error_code").and_then(Json::as_i64);
    let message = body
        .get("message")
        .and_then(Json::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| truncated(&body.to_string()));
    (code, message)
}

fn truncated(text: &str) -> String {
    const MAX: usize = 200;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn parse_body(body: &str) -> Json {
    serde_json::from_str(body).unwrap_or_else(|_| Json::String(truncated(body)))
}

/// Turns the registry's answer to `GET /schemas/ids/{id}` into a writer schema, or says whether
/// the record can never decode ([`DecodeError::UnknownSchemaId`], [`DecodeError::RegistryRefused`])
/// or the registry should be asked again ([`DecodeError::RegistryUnavailable`]).
pub fn writer_from_answer(id: u32, status: u16, body: &str) -> Result<WriterSchema, DecodeError> {
    let json = parse_body(body);
    let (code, message) = error_details(&json);
    let unavailable = |reason: String| DecodeError::RegistryUnavailable { id, reason };
    match classify_answer(status, code) {
        RegistryAnswer::Answered => {}
        RegistryAnswer::SchemaNotFound => return Err(DecodeError::UnknownSchemaId { id }),
        RegistryAnswer::SchemaRefused | RegistryAnswer::Unavailable => {
            return Err(unavailable(format!(
                "registry answered {status}: {message}"
            )));
        }
    }
    // A 2xx without a schema in it is not the registry speaking (a proxy's page, a cut-off
    // body): it says nothing about the record.
    let Some(text) = json.get("schema").and_then(Json::as_str) else {
        return Err(unavailable(format!(
            "registry answered {status} without a schema: {}",
            truncated(body)
        )));
    };
    let refused = |reason: String| DecodeError::RegistryRefused { id, reason };
    match json.get("schemaType").and_then(Json::as_str) {
        None | Some("AVRO") => {}
        Some(other) => return Err(refused(format!("schema type is {other}, not AVRO"))),
    }
    if json
        .get("references")
        .and_then(Json::as_array)
        .is_some_and(|r| !r.is_empty())
    {
        // Every schema of this contract is self-contained; a writer that needs references is
        // not one of its records.
        return Err(refused("schema has references".to_owned()));
    }
    let schema =
        Schema::parse_str(text).map_err(|e| refused(format!("not an Avro schema: {e}")))?;
    Ok(WriterSchema::new(id, schema))
}

/// Turns the registry's answer to `POST /subjects/{subject}/versions` into the schema id.
pub fn id_from_answer(subject: &str, status: u16, body: &str) -> Result<u32, EncodeError> {
    let json = parse_body(body);
    let (code, message) = error_details(&json);
    let unavailable = |reason: String| EncodeError::RegistryUnavailable {
        subject: subject.to_owned(),
        reason,
    };
    match classify_answer(status, code) {
        RegistryAnswer::Answered => json
            .get("id")
            .and_then(Json::as_u64)
            .and_then(|id| u32::try_from(id).ok())
            .ok_or_else(|| {
                unavailable(format!(
                    "registry answered {status} without an id: {}",
                    truncated(body)
                ))
            }),
        RegistryAnswer::SchemaRefused => Err(EncodeError::RegistryRefused {
            subject: subject.to_owned(),
            reason: format!("registry answered {status}: {message}"),
        }),
        RegistryAnswer::SchemaNotFound | RegistryAnswer::Unavailable => Err(unavailable(format!(
            "registry answered {status}: {message}"
        ))),
    }
}

/// Encodes and decodes every [`WireRecord`] in the Confluent wire format against a registry.
///
/// Cheap to share (`Arc<Codec>`): after the first record of a stream, encoding is a map lookup
/// plus the Avro write; decoding is a map lookup plus the Avro read.
pub struct Codec {
    topics: Topics,
    ids: RwLock<HashMap<Stream, u32>>,
    writers: RwLock<HashMap<u32, Arc<WriterSchema>>>,
    /// The registry's endpoint and HTTP client, shared with registration.
    registry: crate::register::Registry,
    auto_register: bool,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec")
            .field("topics", &self.topics)
            .field("registry", &self.registry.base().as_str())
            .finish_non_exhaustive()
    }
}

const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

impl Codec {
    /// A codec for the streams named by `topics`, against the registry's Confluent API base URL
    /// (for Apicurio: `http://host:port/apis/ccompat/v7`).
    pub fn new(registry_url: &str, topics: Topics) -> Result<Self, RegistryConfigError> {
        let registry =
            crate::register::Registry::new(registry_url).map_err(|e| RegistryConfigError {
                url: registry_url.to_owned(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            topics,
            ids: RwLock::new(HashMap::new()),
            writers: RwLock::new(HashMap::new()),
            registry,
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

    /// Sends a request and reads the whole answer; `Err` is a transport failure (refused
    /// connection, timeout, a body cut off), which is always worth a retry.
    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<(u16, String), String> {
        let response = request
            .header(reqwest::header::ACCEPT, CONTENT_TYPE)
            .send()
            .await
            .map_err(|e| format!("registry call failed: {}", transport(&e)))?;
        let status = response.status().as_u16();
        let body = response
            .text()
            .await
            .map_err(|e| format!("reading the registry's answer failed: {}", transport(&e)))?;
        Ok((status, body))
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
        let body = serde_json::json!({ "schema": local.json, "schemaType": "AVRO" });
        let request = self
            .registry
            .http()
            .post(self.registry.url(&["subjects", &subject, "versions"]))
            .header(reqwest::header::CONTENT_TYPE, CONTENT_TYPE)
            .body(body.to_string());
        let (status, answer) =
            self.exchange(request)
                .await
                .map_err(|reason| EncodeError::RegistryUnavailable {
                    subject: subject.clone(),
                    reason,
                })?;
        let id = id_from_answer(&subject, status, &answer)?;
        if let Ok(mut ids) = self.ids.write() {
            ids.insert(stream, id);
        }
        Ok(id)
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
    ///
    /// Only schemas are remembered: an id the registry does not know, or a registry that
    /// failed, is asked about again on the next call.
    pub async fn writer_schema(&self, id: u32) -> Result<Arc<WriterSchema>, DecodeError> {
        if let Some(w) = self.cached_writer(id) {
            return Ok(w);
        }
        let id_text = id.to_string();
        let request = self
            .registry
            .http()
            .get(self.registry.url(&["schemas", "ids", &id_text]));
        let (status, body) = self
            .exchange(request)
            .await
            .map_err(|reason| DecodeError::RegistryUnavailable { id, reason })?;
        let writer = Arc::new(writer_from_answer(id, status, &body)?);
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

/// A transport error with its causes, which reqwest keeps out of its own message.
fn transport(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    if e.is_timeout() {
        text.push_str(" (timed out)");
    }
    text
}
