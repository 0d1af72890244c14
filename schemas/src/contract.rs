//! The Avro contract compiled into this build: the `.avsc` files under `schemas/avro/`,
//! assembled into one self-contained schema per stream (the form that is registered).
//!
//! The files reference shared named types (`streamcart.common.Money`, the payload records)
//! by name; they are parsed together and each top-level record is inlined into a standalone
//! schema, because a registry subject must hold a schema that parses on its own.

use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::ResolvedSchema;
use apache_avro::writer::datum::GenericDatumWriter;

use crate::error::SchemaError;
use crate::topics::{Context, Stream, StreamKind};

include!(concat!(env!("OUT_DIR"), "/avsc_files.rs"));

/// Full Avro name of the top-level record a stream carries.
pub fn full_name(stream: Stream) -> &'static str {
    use Context::*;
    use StreamKind::*;
    match stream {
        Stream::Aggregate(Catalog, Commands) => "streamcart.catalog.ProductCommandEnvelope",
        Stream::Aggregate(Catalog, Events) => "streamcart.catalog.ProductEventEnvelope",
        Stream::Aggregate(Catalog, Snapshots) => "streamcart.catalog.ProductSnapshot",
        Stream::Aggregate(Inventory, Commands) => "streamcart.inventory.StockCommandEnvelope",
        Stream::Aggregate(Inventory, Events) => "streamcart.inventory.StockEventEnvelope",
        Stream::Aggregate(Inventory, Snapshots) => "streamcart.inventory.StockSnapshot",
        Stream::Aggregate(Orders, Commands) => "streamcart.orders.OrderCommandEnvelope",
        Stream::Aggregate(Orders, Events) => "streamcart.orders.OrderEventEnvelope",
        Stream::Aggregate(Orders, Snapshots) => "streamcart.orders.OrderSnapshot",
        Stream::Aggregate(Payments, Commands) => "streamcart.payments.PaymentCommandEnvelope",
        Stream::Aggregate(Payments, Events) => "streamcart.payments.PaymentEventEnvelope",
        Stream::Aggregate(Payments, Snapshots) => "streamcart.payments.PaymentSnapshot",
        Stream::CommandResults => "streamcart.common.CommandResult",
        Stream::OrderSummary => "streamcart.orders.OrderSummary",
        Stream::ProductSummary => "streamcart.catalog.ProductSummary",
    }
}

/// One stream's schema, assembled and parsed.
#[derive(Debug)]
pub struct LocalSchema {
    /// The stream that carries it.
    pub stream: Stream,
    /// Full Avro name of the top-level record.
    pub full_name: &'static str,
    /// Self-contained schema JSON with docs, exactly as registered.
    pub json: String,
    /// The parsed schema.
    pub schema: Schema,
    /// Parsing Canonical Form, to recognise a writer schema identical to this one.
    pub canonical: String,
}

static SCHEMAS: LazyLock<Result<Vec<LocalSchema>, SchemaError>> = LazyLock::new(assemble);

/// A datum writer and reader per stream, for this build's own schema: building them resolves
/// the schema's named types, which is too costly to repeat for every record.
struct DatumIo {
    writer: GenericDatumWriter<'static>,
    reader: GenericDatumReader<'static>,
}

static DATUM_IO: LazyLock<Result<Vec<DatumIo>, SchemaError>> = LazyLock::new(|| {
    let schemas = SCHEMAS.as_ref().map_err(Clone::clone)?;
    schemas
        .iter()
        .map(|s| {
            let failed = |e: apache_avro::Error| SchemaError(format!("{}: {e}", s.full_name));
            let names = ResolvedSchema::try_from(&s.schema).map_err(failed)?;
            // Values come from the typed mapping, whose every shape the tests encode; checking
            // each value against the schema again costs a few percent of a processor, so
            // release builds trust the mapping while debug builds (all tests) still check.
            let writer = GenericDatumWriter::builder(&s.schema)
                .resolved_schemata(names.clone())
                .validate(cfg!(debug_assertions))
                .build()
                .map_err(failed)?;
            let reader = GenericDatumReader::builder(&s.schema)
                .resolved_writer_schemata(names)
                .build()
                .map_err(failed)?;
            Ok(DatumIo { writer, reader })
        })
        .collect()
});

fn assemble() -> Result<Vec<LocalSchema>, SchemaError> {
    let texts: Vec<&str> = AVSC_FILES.iter().map(|(_, text)| *text).collect();
    let parsed = Schema::parse_list(&texts).map_err(|e| SchemaError(format!("parse: {e}")))?;
    Stream::all()
        .into_iter()
        .map(|stream| {
            let full_name = full_name(stream);
            let mut top = parsed
                .iter()
                .find(|s| s.name().map(|n| n.fullname(None)) == Some(full_name.to_owned()))
                .cloned()
                .ok_or_else(|| SchemaError(format!("no .avsc defines {full_name}")))?;
            top.denormalize(&parsed)
                .map_err(|e| SchemaError(format!("{full_name}: {e}")))?;
            let json = serde_json::to_string(&top)
                .map_err(|e| SchemaError(format!("{full_name}: {e}")))?;
            // Re-parse so the schema we use is exactly the one the registry will see.
            let schema =
                Schema::parse_str(&json).map_err(|e| SchemaError(format!("{full_name}: {e}")))?;
            let canonical = schema.canonical_form();
            Ok(LocalSchema {
                stream,
                full_name,
                json,
                schema,
                canonical,
            })
        })
        .collect()
}

/// Every stream's schema, in [`Stream::all`] order.
pub fn local_schemas() -> Result<&'static [LocalSchema], SchemaError> {
    SCHEMAS.as_deref().map_err(Clone::clone)
}

fn index_of(stream: Stream) -> Result<usize, SchemaError> {
    // Called for every record encoded or decoded: no list is built.
    Ok(stream.index())
}

/// The schema of one stream.
pub fn local_schema(stream: Stream) -> Result<&'static LocalSchema, SchemaError> {
    let index = index_of(stream)?;
    local_schemas()?
        .get(index)
        .ok_or_else(|| SchemaError(format!("no schema for {stream}")))
}

/// The writer and the reader of one stream's own schema, built once for the hot path.
pub(crate) fn datum_io(
    stream: Stream,
) -> Result<
    (
        &'static GenericDatumWriter<'static>,
        &'static GenericDatumReader<'static>,
    ),
    SchemaError,
> {
    let io = DATUM_IO
        .as_ref()
        .map_err(Clone::clone)?
        .get(index_of(stream)?)
        .ok_or_else(|| SchemaError(format!("no datum writer for {stream}")))?;
    Ok((&io.writer, &io.reader))
}

/// True when `canonical` (a Parsing Canonical Form) is this build's schema of some stream.
pub(crate) fn is_local_canonical(canonical: &str) -> bool {
    SCHEMAS
        .as_ref()
        .is_ok_and(|all| all.iter().any(|s| s.canonical == canonical))
}

/// The `.avsc` files compiled into this build, as (path under `avro/`, JSON text).
pub fn avsc_files() -> &'static [(&'static str, &'static str)] {
    AVSC_FILES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_stream_has_a_self_contained_schema_with_docs() {
        let schemas = local_schemas().expect("schemas assemble");
        assert_eq!(schemas.len(), Stream::all().len());
        for s in schemas {
            assert_eq!(
                s.schema.name().map(|n| n.fullname(None)).as_deref(),
                Some(s.full_name)
            );
            // Standalone: parses without any other file.
            assert!(Schema::parse_str(&s.json).is_ok(), "{}", s.full_name);
            assert!(s.json.contains("\"doc\""), "{} lost its docs", s.full_name);
            assert!(datum_io(s.stream).is_ok());
            if s.full_name.ends_with("CommandEnvelope") || s.full_name.ends_with("Snapshot") {
                assert!(
                    s.json.contains("\"default\":null"),
                    "{} lost its defaults",
                    s.full_name
                );
            }
        }
    }

    #[test]
    fn every_field_of_every_file_is_documented() {
        fn walk(path: &str, v: &serde_json::Value) {
            if let Some(obj) = v.as_object() {
                if obj.get("type").and_then(|t| t.as_str()) == Some("record") {
                    assert!(obj.contains_key("doc"), "{path}: record without doc");
                    for field in obj["fields"].as_array().expect("fields") {
                        assert!(
                            field.get("doc").is_some(),
                            "{path}: field {} without doc",
                            field["name"]
                        );
                        walk(path, &field["type"]);
                    }
                }
                if obj.get("type").and_then(|t| t.as_str()) == Some("enum") {
                    assert!(obj.contains_key("doc"), "{path}: enum without doc");
                }
            }
            if let Some(items) = v.as_array() {
                for item in items {
                    walk(path, item);
                }
            }
        }
        for (path, text) in avsc_files() {
            let json: serde_json::Value = serde_json::from_str(text).expect("json");
            let ns = json["namespace"].as_str().expect("namespace");
            let dir = path.split('/').next().expect("dir");
            assert_eq!(
                ns,
                format!("streamcart.{dir}"),
                "{path}: namespace follows folder"
            );
            walk(path, &json);
        }
    }
}
