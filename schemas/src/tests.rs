//! Round trips for every variant, the typed decode failures, and decoding arbitrary bytes.

use std::sync::Arc;

use proptest::prelude::*;
use streamcart_aggregates::catalog::{ProductCommand, ProductEvent, ProductState};
use streamcart_aggregates::inventory::{StockCommand, StockEvent, StockState};
use streamcart_aggregates::orders::{OrderCommand, OrderEvent, OrderState};
use streamcart_aggregates::payments::{PaymentCommand, PaymentEvent, PaymentState};

use crate::codec::{WriterSchema, decode_with, encode_with_id, frame, split_header};
use crate::envelope::{CommandEnvelope, CommandResult, EventEnvelope, Snapshot, WireRecord};
use crate::error::{DecodeError, Disposition, MappingError};
use crate::samples;
use crate::topics::{Context, Stream, StreamKind};

type TestResult = Result<(), Box<dyn std::error::Error>>;

/// Each stream's local schema under a fake id, so no registry is needed.
fn local_writers(id: u32) -> Option<Arc<WriterSchema>> {
    let streams = Stream::all();
    let stream = streams.get(usize::try_from(id).ok()?.checked_sub(100)?)?;
    WriterSchema::local(id, *stream).ok().map(Arc::new)
}

fn fake_id(stream: Stream) -> u32 {
    let index = Stream::all().iter().position(|s| *s == stream).unwrap_or(0);
    100 + u32::try_from(index).unwrap_or(0)
}

fn round_trip<T>(record: &T) -> TestResult
where
    T: WireRecord + PartialEq + std::fmt::Debug,
{
    let value = record.to_avro()?;
    assert_eq!(&T::from_avro(value)?, record, "value round trip");
    let bytes = encode_with_id(fake_id(T::STREAM), record)?;
    assert_eq!(split_header(&bytes)?.0, fake_id(T::STREAM));
    let back: T = decode_with(&bytes, local_writers)?;
    assert_eq!(&back, record, "wire round trip");
    Ok(())
}

#[test]
fn every_catalog_variant_round_trips() -> TestResult {
    for c in samples::product_commands() {
        round_trip(&samples::command_envelope("SKU-000042", c))?;
    }
    for e in samples::product_events()? {
        round_trip(&samples::event_envelope("SKU-000042", 1, e))?;
    }
    for s in samples::product_states()? {
        round_trip(&samples::snapshot("SKU-000042", 5, s))?;
    }
    Ok(())
}

#[test]
fn every_inventory_variant_round_trips() -> TestResult {
    for c in samples::stock_commands()? {
        round_trip(&samples::command_envelope("SKU-000042", c))?;
    }
    for e in samples::stock_events()? {
        round_trip(&samples::event_envelope("SKU-000042", 2, e))?;
    }
    for s in samples::stock_states()? {
        round_trip(&samples::snapshot("SKU-000042", 9, s))?;
    }
    Ok(())
}

#[test]
fn every_orders_variant_round_trips() -> TestResult {
    let id = "0190c7a2-1b2c-7d3e-8f40-123456789abc";
    for c in samples::order_commands()? {
        round_trip(&samples::command_envelope(id, c))?;
    }
    for e in samples::order_events()? {
        round_trip(&samples::event_envelope(id, 3, e))?;
    }
    for s in samples::order_states()? {
        round_trip(&samples::snapshot(id, 7, s))?;
    }
    Ok(())
}

#[test]
fn every_payments_variant_round_trips() -> TestResult {
    let id = "0190c7a2-1b2c-7d3e-8f40-123456789abc";
    for c in samples::payment_commands()? {
        round_trip(&samples::command_envelope(id, c))?;
    }
    for e in samples::payment_events()? {
        round_trip(&samples::event_envelope(id, 1, e))?;
    }
    for s in samples::payment_states()? {
        round_trip(&samples::snapshot(id, 2, s))?;
    }
    Ok(())
}

#[test]
fn every_command_result_round_trips() -> TestResult {
    for r in samples::command_results() {
        round_trip(&r)?;
    }
    let mut no_check = samples::command_envelope(
        "SKU-1",
        ProductCommand::from(streamcart_aggregates::catalog::DiscontinueProduct),
    );
    no_check.expected_version = None;
    round_trip(&no_check)
}

#[test]
fn sample_lists_cover_every_union_branch() -> TestResult {
    use crate::envelope::AvroPayload;
    fn branches<P: AvroPayload>(items: &[P]) -> Result<Vec<u32>, MappingError> {
        let mut seen: Vec<u32> = items
            .iter()
            .map(|p| match p.to_avro()? {
                apache_avro::types::Value::Union(i, _) => Ok(i),
                _ => Ok(u32::MAX),
            })
            .collect::<Result<_, MappingError>>()?;
        seen.sort_unstable();
        seen.dedup();
        Ok(seen)
    }
    let all = |n: u32| (0..n).collect::<Vec<u32>>();
    assert_eq!(branches(&samples::product_commands())?, all(5));
    assert_eq!(branches(&samples::product_events()?)?, all(5));
    assert_eq!(branches(&samples::stock_commands()?)?, all(4));
    assert_eq!(branches(&samples::stock_events()?)?, all(5));
    assert_eq!(branches(&samples::order_commands()?)?, all(6));
    assert_eq!(branches(&samples::order_events()?)?, all(9));
    assert_eq!(branches(&samples::payment_commands()?)?, all(2));
    assert_eq!(branches(&samples::payment_events()?)?, all(3));
    Ok(())
}

fn stock_command_bytes() -> Result<Vec<u8>, Box<dyn std::error::Error>> {
    let c = samples::stock_commands()?
        .into_iter()
        .nth(1)
        .ok_or("sample")?;
    Ok(encode_with_id(
        fake_id(Stream::Aggregate(Context::Inventory, StreamKind::Commands)),
        &samples::command_envelope("SKU-000042", c),
    )?)
}

#[test]
fn wrong_magic_byte_is_a_permanent_typed_error() -> TestResult {
    let mut bytes = stock_command_bytes()?;
    bytes[0] = 1;
    let err = decode_with::<CommandEnvelope<StockCommand>>(&bytes, local_writers)
        .err()
        .ok_or("decoded")?;
    assert!(
        matches!(err, DecodeError::WrongMagicByte { found: 1 }),
        "{err}"
    );
    assert_eq!(err.disposition(), Disposition::DeadLetter);
    Ok(())
}

#[test]
fn short_values_are_typed_errors() {
    for len in 0..5 {
        let err = decode_with::<CommandResult>(&vec![0; len], local_writers).err();
        assert!(matches!(err, Some(DecodeError::TooShort { len: l }) if l == len));
    }
}

#[test]
fn unknown_schema_id_is_a_typed_error() {
    let err = decode_with::<CommandResult>(&frame(9_999_999, &[0, 0]), local_writers).err();
    assert!(matches!(
        err,
        Some(DecodeError::UnknownSchemaId { id: 9_999_999 })
    ));
}

#[test]
fn payload_of_another_context_is_refused_by_name() -> TestResult {
    let bytes = stock_command_bytes()?;
    let err = decode_with::<CommandEnvelope<ProductCommand>>(&bytes, local_writers)
        .err()
        .ok_or("decoded")?;
    match err {
        DecodeError::UnexpectedSchema {
            expected, found, ..
        } => {
            assert_eq!(expected, "streamcart.catalog.ProductCommandEnvelope");
            assert_eq!(found, "streamcart.inventory.StockCommandEnvelope");
        }
        other => return Err(format!("unexpected {other}").into()),
    }
    // An event stream's bytes are not commands of the same context either.
    let err = decode_with::<EventEnvelope<StockEvent>>(&bytes, local_writers).err();
    assert!(matches!(err, Some(DecodeError::UnexpectedSchema { .. })));
    Ok(())
}

#[test]
fn truncated_and_padded_bodies_are_typed_errors() -> TestResult {
    let bytes = stock_command_bytes()?;
    for cut in 5..bytes.len() {
        let err = decode_with::<CommandEnvelope<StockCommand>>(&bytes[..cut], local_writers).err();
        assert!(
            matches!(
                err,
                Some(DecodeError::CorruptBody { .. } | DecodeError::Mapping { .. })
            ),
            "cut at {cut}: {err:?}"
        );
    }
    let mut padded = bytes.clone();
    padded.push(0);
    let err = decode_with::<CommandEnvelope<StockCommand>>(&padded, local_writers).err();
    assert!(matches!(
        err,
        Some(DecodeError::TrailingBytes { extra: 1, .. })
    ));
    Ok(())
}

#[test]
fn invalid_domain_ids_are_mapping_errors() -> TestResult {
    // A sku with a space survives Avro but not the domain.
    let mut event = samples::event_envelope(
        "SKU-1",
        1,
        samples::product_events()?
            .into_iter()
            .next()
            .ok_or("sample")?,
    )
    .to_avro()?;
    if let apache_avro::types::Value::Record(fields) = &mut event
        && let Some((_, apache_avro::types::Value::Union(_, payload))) =
            fields.iter_mut().find(|(n, _)| n == "payload")
        && let apache_avro::types::Value::Record(inner) = payload.as_mut()
        && let Some((_, sku)) = inner.iter_mut().find(|(n, _)| n == "sku")
    {
        *sku = apache_avro::types::Value::String("not a sku".to_owned());
    }
    let err = EventEnvelope::<ProductEvent>::from_avro(event).err();
    assert!(
        matches!(err, Some(MappingError::Invalid { field: "sku", .. })),
        "{err:?}"
    );
    Ok(())
}

#[test]
fn newer_writer_schema_with_a_defaulted_field_still_decodes() -> TestResult {
    // A later release adds an optional field; this build must keep reading its records.
    let stream = Stream::Aggregate(Context::Payments, StreamKind::Commands);
    let local = crate::contract::local_schema(stream)?;
    let mut json: serde_json::Value = serde_json::from_str(&local.json)?;
    json["fields"].as_array_mut().ok_or("fields")?.push(
        serde_json::json!({"name": "tenant", "type": "string", "default": "main", "doc": "x"}),
    );
    let newer = apache_avro::Schema::parse(&json)?;
    let command = samples::command_envelope(
        "0190c7a2-1b2c-7d3e-8f40-123456789abc",
        samples::payment_commands()?
            .into_iter()
            .next()
            .ok_or("sample")?,
    );
    let mut value = command.to_avro()?;
    if let apache_avro::types::Value::Record(fields) = &mut value {
        fields.push((
            "tenant".to_owned(),
            apache_avro::types::Value::String("eu".to_owned()),
        ));
    }
    let body = apache_avro::writer::datum::GenericDatumWriter::builder(&newer)
        .build()?
        .write_value_to_vec(value)?;
    let writer = Arc::new(WriterSchema::new(500, newer));
    let back: CommandEnvelope<PaymentCommand> =
        decode_with(&frame(500, &body), |_| Some(writer.clone()))?;
    assert_eq!(back, command);
    Ok(())
}

/// Every stream's sample bytes, to mutate in the property tests.
fn corpus() -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut push = |r: Result<Vec<u8>, crate::error::EncodeError>| {
        if let Ok(b) = r {
            out.push(b);
        }
    };
    let id = |s| fake_id(s);
    for c in samples::order_commands().unwrap_or_default() {
        let e = samples::command_envelope("0190c7a2-1b2c-7d3e-8f40-123456789abc", c);
        push(encode_with_id(
            id(<CommandEnvelope<OrderCommand> as WireRecord>::STREAM),
            &e,
        ));
    }
    for e in samples::order_events().unwrap_or_default() {
        let e = samples::event_envelope("0190c7a2-1b2c-7d3e-8f40-123456789abc", 1, e);
        push(encode_with_id(
            id(<EventEnvelope<OrderEvent> as WireRecord>::STREAM),
            &e,
        ));
    }
    for s in samples::stock_states().unwrap_or_default() {
        let s = samples::snapshot("SKU-1", 1, s);
        push(encode_with_id(
            id(<Snapshot<StockState> as WireRecord>::STREAM),
            &s,
        ));
    }
    for r in samples::command_results() {
        push(encode_with_id(id(Stream::CommandResults), &r));
    }
    out
}

/// Tries every decoder on the same bytes; none may panic.
fn decode_everything(bytes: &[u8]) {
    let _ = decode_with::<CommandEnvelope<ProductCommand>>(bytes, local_writers);
    let _ = decode_with::<EventEnvelope<ProductEvent>>(bytes, local_writers);
    let _ = decode_with::<Snapshot<ProductState>>(bytes, local_writers);
    let _ = decode_with::<CommandEnvelope<StockCommand>>(bytes, local_writers);
    let _ = decode_with::<EventEnvelope<StockEvent>>(bytes, local_writers);
    let _ = decode_with::<Snapshot<StockState>>(bytes, local_writers);
    let _ = decode_with::<CommandEnvelope<OrderCommand>>(bytes, local_writers);
    let _ = decode_with::<EventEnvelope<OrderEvent>>(bytes, local_writers);
    let _ = decode_with::<Snapshot<OrderState>>(bytes, local_writers);
    let _ = decode_with::<CommandEnvelope<PaymentCommand>>(bytes, local_writers);
    let _ = decode_with::<EventEnvelope<PaymentEvent>>(bytes, local_writers);
    let _ = decode_with::<Snapshot<PaymentState>>(bytes, local_writers);
    let _ = decode_with::<CommandResult>(bytes, local_writers);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        decode_everything(&bytes);
    }

    #[test]
    fn random_bodies_under_every_known_id_never_panic(
        stream in 0usize..13,
        body in proptest::collection::vec(any::<u8>(), 0..256),
    ) {
        let id = 100 + u32::try_from(stream).unwrap_or(0);
        decode_everything(&frame(id, &body));
    }

    #[test]
    fn mutated_valid_records_never_panic(
        pick in any::<prop::sample::Index>(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let corpus = corpus();
        prop_assume!(!corpus.is_empty());
        let mut bytes = pick.get(&corpus).clone();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            if let Some(b) = bytes.get_mut(i) {
                // Keep the header intact most of the time so the body parser is what gets tested.
                if i >= 5 || byte % 8 == 0 {
                    *b = byte;
                }
            }
        }
        if truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        decode_everything(&bytes);
    }

    #[test]
    fn huge_length_prefixes_fail_without_allocating(len in 1_000_000i64..i64::MAX / 4) {
        // A zig-zag varint length far beyond the body: must be an error, not an allocation.
        let mut body = Vec::new();
        let mut v = (len << 1) as u64;
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 { body.push(byte); break; }
            body.push(byte | 0x80);
        }
        let id = fake_id(Stream::CommandResults);
        let r = decode_with::<CommandResult>(&frame(id, &body), local_writers);
        prop_assert!(r.is_err());
    }
}

mod registry_answers {
    //! What each registry answer means for a record: retry (never a dead letter) or dead letter.

    use super::*;
    use crate::codec::{RegistryAnswer, classify_answer, id_from_answer, writer_from_answer};
    use crate::contract::local_schema;
    use crate::error::EncodeError;

    fn schema_body(stream: Stream) -> Result<String, Box<dyn std::error::Error>> {
        let local = local_schema(stream)?;
        Ok(serde_json::json!({ "schema": local.json }).to_string())
    }

    const RESULTS: Stream = Stream::CommandResults;

    #[test]
    fn statuses_that_say_nothing_about_the_record_are_transient() {
        for status in [500, 502, 503, 504, 429, 408, 401, 403, 400, 418, 301] {
            assert_eq!(
                classify_answer(status, None),
                RegistryAnswer::Unavailable,
                "{status}"
            );
        }
        // A 404 is only "no such schema" when the registry says so with its error code.
        assert_eq!(classify_answer(404, None), RegistryAnswer::Unavailable);
        assert_eq!(
            classify_answer(404, Some(40401)),
            RegistryAnswer::Unavailable
        );
        assert_eq!(
            classify_answer(404, Some(40403)),
            RegistryAnswer::SchemaNotFound
        );
        assert_eq!(
            classify_answer(409, Some(409)),
            RegistryAnswer::SchemaRefused
        );
        assert_eq!(
            classify_answer(422, Some(42201)),
            RegistryAnswer::SchemaRefused
        );
        assert_eq!(classify_answer(200, None), RegistryAnswer::Answered);
    }

    #[test]
    fn server_errors_and_throttling_are_retried_by_the_decoder() {
        let bodies = [
            (
                500,
                r#"{"error_code":50001,"message":"Error in the backend datastore"}"#,
            ),
            (504, "<html>Gateway Timeout</html>"),
            (429, r#"{"error_code":42901,"message":"slow down"}"#),
            (503, ""),
            (401, r#"{"error_code":401,"message":"Unauthorized"}"#),
            (404, "<html>Not Found</html>"),
        ];
        for (status, body) in bodies {
            let err = writer_from_answer(7, status, body)
                .err()
                .unwrap_or_else(|| panic!("{status} gave a schema"));
            assert!(
                matches!(err, DecodeError::RegistryUnavailable { id: 7, .. }),
                "{status}: {err}"
            );
            assert_eq!(err.disposition(), Disposition::Retry, "{status}");
            assert!(err.to_string().contains(&status.to_string()), "{err}");
        }
    }

    #[test]
    fn an_id_unknown_to_a_working_registry_is_a_dead_letter() {
        let body = r#"{"message":"Schema 99 not found.","error_code":40403}"#;
        let err = writer_from_answer(99, 404, body).err();
        assert!(
            matches!(err, Some(DecodeError::UnknownSchemaId { id: 99 })),
            "{err:?}"
        );
        assert_eq!(err.map(|e| e.disposition()), Some(Disposition::DeadLetter));
    }

    #[test]
    fn a_garbled_success_is_retried_and_a_foreign_schema_dead_lettered() -> TestResult {
        for body in ["", "<html>ok</html>", r#"{"id": 3}"#, r#"{"schema": 5}"#] {
            let err = writer_from_answer(3, 200, body).err().ok_or("schema")?;
            assert_eq!(err.disposition(), Disposition::Retry, "{body:?}: {err}");
        }
        let foreign = [
            r#"{"schema":"syntax = \"proto3\";","schemaType":"PROTOBUF"}"#.to_owned(),
            r#"{"schema":"{\"type\":\"record\"}"}"#.to_owned(),
            serde_json::json!({
                "schema": local_schema(RESULTS)?.json,
                "references": [{"name": "x", "subject": "s", "version": 1}],
            })
            .to_string(),
        ];
        for body in &foreign {
            let err = writer_from_answer(3, 200, body).err().ok_or("schema")?;
            assert!(
                matches!(err, DecodeError::RegistryRefused { id: 3, .. }),
                "{err}"
            );
            assert_eq!(err.disposition(), Disposition::DeadLetter);
        }
        Ok(())
    }

    #[test]
    fn a_fetched_schema_decodes_records() -> TestResult {
        let writer = Arc::new(writer_from_answer(42, 200, &schema_body(RESULTS)?)?);
        assert_eq!(writer.id(), 42);
        let record = samples::command_results()
            .into_iter()
            .next()
            .ok_or("sample")?;
        let bytes = encode_with_id(42, &record)?;
        let back: CommandResult = decode_with(&bytes, |_| Some(writer.clone()))?;
        assert_eq!(back, record);
        Ok(())
    }

    #[test]
    fn registering_is_retried_unless_the_schema_itself_is_refused() {
        assert_eq!(id_from_answer("s", 200, r#"{"id":17}"#).ok(), Some(17));
        for (status, body) in [
            (500, r#"{"error_code":50001,"message":"boom"}"#),
            (504, ""),
            (429, "{}"),
            (200, "{}"),
            (200, r#"{"id":-1}"#),
        ] {
            let err = id_from_answer("s", status, body).err();
            assert!(
                matches!(err, Some(EncodeError::RegistryUnavailable { .. })),
                "{status} {body}: {err:?}"
            );
            assert_eq!(err.map(|e| e.disposition()), Some(Disposition::Retry));
        }
        for status in [409, 422] {
            let err = id_from_answer("s", status, r#"{"error_code":409,"message":"no"}"#).err();
            assert!(
                matches!(err, Some(EncodeError::RegistryRefused { .. })),
                "{status}: {err:?}"
            );
            assert_eq!(err.map(|e| e.disposition()), Some(Disposition::DeadLetter));
        }
    }
}
