//! Avro binary encoding of a mapped value without consulting the schema.
//!
//! apache-avro's schema-driven writer looks every record field up by name (building a hash map
//! per record), which made encoding the largest cost of a command processor. The mapping in
//! [`crate::mapping`] already builds values in schema shape — fields in `.avsc` order, unions
//! with their branch index, enums as [`Value::Enum`] — so the bytes follow from the value
//! alone. Values whose encoding depends on the schema (a string written as an enum symbol, a
//! record standing for a union, decimals) are refused, and the caller falls back to the
//! schema-driven writer; debug builds compare both on every record.

use apache_avro::types::Value;

/// The value's kind cannot be encoded without its schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NeedsSchema;

/// Appends the Avro binary encoding of `value` to `out`.
pub(crate) fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), NeedsSchema> {
    match value {
        Value::Null => {}
        Value::Boolean(b) => out.push(u8::from(*b)),
        Value::Int(i) | Value::Date(i) | Value::TimeMillis(i) => write_long(i64::from(*i), out),
        Value::Long(l)
        | Value::TimeMicros(l)
        | Value::TimestampMillis(l)
        | Value::TimestampMicros(l)
        | Value::LocalTimestampMillis(l)
        | Value::LocalTimestampMicros(l) => write_long(*l, out),
        Value::Float(f) => out.extend_from_slice(&f.to_le_bytes()),
        Value::Double(d) => out.extend_from_slice(&d.to_le_bytes()),
        Value::Bytes(b) => write_bytes(b, out),
        Value::String(s) => write_bytes(s.as_bytes(), out),
        // The contract's ids are `string` with logical type `uuid`.
        Value::Uuid(u) => write_bytes(u.hyphenated().encode_lower(&mut [0u8; 36]).as_bytes(), out),
        Value::Fixed(_, b) => out.extend_from_slice(b),
        Value::Enum(index, _) => write_long(i64::from(*index), out),
        Value::Union(index, inner) => {
            write_long(i64::from(*index), out);
            write_value(inner, out)?;
        }
        Value::Array(items) => {
            if !items.is_empty() {
                write_long(items.len() as i64, out);
                for item in items {
                    write_value(item, out)?;
                }
            }
            out.push(0);
        }
        Value::Record(fields) => {
            for (_, field) in fields {
                write_value(field, out)?;
            }
        }
        // Maps iterate in hash order (the schema-driven writer's order too, but not a stable
        // one to compare against); decimals and the rest need their schema.
        _ => return Err(NeedsSchema),
    }
    Ok(())
}

/// Zig-zag variable-length encoding of a `long` (an `int` encodes the same way).
fn write_long(value: i64, out: &mut Vec<u8>) {
    let mut n = ((value << 1) ^ (value >> 63)) as u64;
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn write_bytes(bytes: &[u8], out: &mut Vec<u8>) {
    write_long(bytes.len() as i64, out);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::Schema;

    fn schema_driven(value: &Value, schema: &str) -> Vec<u8> {
        let schema = Schema::parse_str(schema).expect("schema");
        let writer = apache_avro::writer::datum::GenericDatumWriter::builder(&schema)
            .build()
            .expect("writer");
        let mut out = Vec::new();
        writer.write_value_ref(&mut out, value).expect("encodes");
        out
    }

    fn direct(value: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        write_value(value, &mut out).expect("direct");
        out
    }

    #[test]
    fn longs_match_the_reference_encoding_at_the_edges() {
        for l in [
            0,
            1,
            -1,
            63,
            -64,
            64,
            -65,
            8191,
            1 << 40,
            i64::MAX,
            i64::MIN,
        ] {
            let v = Value::Long(l);
            assert_eq!(direct(&v), schema_driven(&v, r#""long""#), "{l}");
        }
        for i in [0, -1, 300, i32::MAX, i32::MIN] {
            let v = Value::Int(i);
            assert_eq!(direct(&v), schema_driven(&v, r#""int""#), "{i}");
        }
    }

    #[test]
    fn a_nested_record_matches_the_reference_encoding() {
        let schema = r#"{"type":"record","name":"R","fields":[
            {"name":"id","type":{"type":"string","logicalType":"uuid"}},
            {"name":"n","type":"long"},
            {"name":"ok","type":"boolean"},
            {"name":"tags","type":{"type":"array","items":"string"}},
            {"name":"none","type":{"type":"array","items":"long"}},
            {"name":"opt","type":["null","double"]},
            {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B","C"]}},
            {"name":"raw","type":"bytes"}]}"#;
        let value = Value::Record(vec![
            (
                "id".into(),
                Value::Uuid(uuid::Uuid::from_u128(0x1234_5678_9abc)),
            ),
            ("n".into(), Value::Long(-12_345)),
            ("ok".into(), Value::Boolean(true)),
            (
                "tags".into(),
                Value::Array(vec![Value::String("a".into()), Value::String("ñ".into())]),
            ),
            ("none".into(), Value::Array(vec![])),
            ("opt".into(), Value::Union(1, Box::new(Value::Double(2.5)))),
            ("e".into(), Value::Enum(2, "C".into())),
            ("raw".into(), Value::Bytes(vec![0, 255, 7])),
        ]);
        assert_eq!(direct(&value), schema_driven(&value, schema));
    }

    #[test]
    fn maps_are_left_to_the_schema() {
        let mut out = Vec::new();
        let map = Value::Map(std::collections::HashMap::new());
        assert_eq!(write_value(&map, &mut out), Err(NeedsSchema));
    }
}
