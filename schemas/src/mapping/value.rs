//! Small readers and writers over `apache_avro::types::Value`, so the per-context mappings
//! read like the `.avsc` files and every malformed value becomes a [`MappingError`].

use apache_avro::types::Value;
use uuid::Uuid;

use crate::error::MappingError;

/// Short description of a value's kind, for error messages that must not echo payloads.
pub(crate) fn kind(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Boolean(_) => "boolean",
        Value::Int(_) => "int",
        Value::Long(_) => "long",
        Value::Float(_) => "float",
        Value::Double(_) => "double",
        Value::Bytes(_) => "bytes",
        Value::String(_) => "string",
        Value::Fixed(..) => "fixed",
        Value::Enum(..) => "enum",
        Value::Union(..) => "union",
        Value::Array(_) => "array",
        Value::Map(_) => "map",
        Value::Record(_) => "record",
        Value::Uuid(_) => "uuid",
        Value::TimestampMillis(_) => "timestamp-millis",
        _ => "other logical type",
    };
    kind.to_owned()
}

/// Builds a record value; field order follows the `.avsc` file.
pub(crate) fn record(fields: Vec<(&str, Value)>) -> Value {
    Value::Record(
        fields
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
    )
}

/// A `long` holding an unsigned domain number.
pub(crate) fn long_u32(value: u32) -> Value {
    Value::Long(i64::from(value))
}

/// A `long` holding a `u64`; refuses values Avro's signed long cannot carry.
pub(crate) fn long_u64(
    record: &'static str,
    field: &'static str,
    value: u64,
) -> Result<Value, MappingError> {
    i64::try_from(value)
        .map(Value::Long)
        .map_err(|_| MappingError::OutOfRange {
            record,
            field,
            value: value.to_string(),
        })
}

/// A `string` with logical type `uuid`, from an id that is already a UUID string.
pub(crate) fn uuid_str(
    record: &'static str,
    field: &'static str,
    value: &str,
) -> Result<Value, MappingError> {
    Uuid::parse_str(value)
        .map(Value::Uuid)
        .map_err(|_| MappingError::InvalidUuid { record, field })
}

/// A union branch; `index` is the branch position in the `.avsc` union.
pub(crate) fn branch(index: u32, value: Value) -> Value {
    Value::Union(index, Box::new(value))
}

/// `["null", T]` union value.
pub(crate) fn optional(value: Option<Value>) -> Value {
    match value {
        None => Value::Union(0, Box::new(Value::Null)),
        Some(v) => Value::Union(1, Box::new(v)),
    }
}

/// An array value.
pub(crate) fn array<T>(items: impl IntoIterator<Item = T>, f: impl Fn(T) -> Value) -> Value {
    Value::Array(items.into_iter().map(f).collect())
}

/// Fallible array value.
pub(crate) fn try_array<T>(
    items: impl IntoIterator<Item = T>,
    f: impl Fn(T) -> Result<Value, MappingError>,
) -> Result<Value, MappingError> {
    items
        .into_iter()
        .map(f)
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// Takes a record's fields out one by one, naming the record and field in every error.
#[derive(Debug)]
pub(crate) struct Fields {
    record: &'static str,
    fields: Vec<(String, Value)>,
}

impl Fields {
    /// Expects a record (possibly wrapped in a union branch by schema resolution).
    pub(crate) fn new(record: &'static str, value: Value) -> Result<Self, MappingError> {
        match unwrap_union(value) {
            Value::Record(fields) => Ok(Self { record, fields }),
            other => Err(MappingError::WrongType {
                record,
                field: "",
                expected: "record",
                found: kind(&other),
            }),
        }
    }

    /// A reader over one loose value, so field helpers apply to it (e.g. an optional id).
    pub(crate) fn single(record: &'static str, field: &'static str, value: Value) -> Self {
        Self {
            record,
            fields: vec![(field.to_owned(), value)],
        }
    }

    fn wrong(&self, field: &'static str, expected: &'static str, found: &Value) -> MappingError {
        MappingError::WrongType {
            record: self.record,
            field,
            expected,
            found: kind(found),
        }
    }

    /// Removes a field; records are small, so a linear search is cheapest.
    pub(crate) fn take(&mut self, field: &'static str) -> Result<Value, MappingError> {
        let pos = self
            .fields
            .iter()
            .position(|(name, _)| name == field)
            .ok_or(MappingError::MissingField {
                record: self.record,
                field,
            })?;
        Ok(unwrap_union(self.fields.swap_remove(pos).1))
    }

    /// Removes a field as is, keeping a union's branch index.
    pub(crate) fn take_raw(&mut self, field: &'static str) -> Result<Value, MappingError> {
        let pos = self
            .fields
            .iter()
            .position(|(name, _)| name == field)
            .ok_or(MappingError::MissingField {
                record: self.record,
                field,
            })?;
        Ok(self.fields.swap_remove(pos).1)
    }

    /// A `["null", "long"]` field.
    pub(crate) fn optional_long(
        &mut self,
        field: &'static str,
    ) -> Result<Option<i64>, MappingError> {
        match self.take(field)? {
            Value::Null => Ok(None),
            Value::Long(v) => Ok(Some(v)),
            other => Err(self.wrong(field, "null or long", &other)),
        }
    }

    /// A `string` field.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, MappingError> {
        match self.take(field)? {
            Value::String(s) => Ok(s),
            other => Err(self.wrong(field, "string", &other)),
        }
    }

    /// A `boolean` field.
    pub(crate) fn boolean(&mut self, field: &'static str) -> Result<bool, MappingError> {
        match self.take(field)? {
            Value::Boolean(b) => Ok(b),
            other => Err(self.wrong(field, "boolean", &other)),
        }
    }

    /// A `long` (or `int`, which resolves to long) field.
    pub(crate) fn long(&mut self, field: &'static str) -> Result<i64, MappingError> {
        match self.take(field)? {
            Value::Long(v) => Ok(v),
            Value::Int(v) => Ok(i64::from(v)),
            other => Err(self.wrong(field, "long", &other)),
        }
    }

    /// A `long` that must fit a `u32`.
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, MappingError> {
        let v = self.long(field)?;
        u32::try_from(v).map_err(|_| MappingError::OutOfRange {
            record: self.record,
            field,
            value: v.to_string(),
        })
    }

    /// A `long` that must be non-negative.
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, MappingError> {
        let v = self.long(field)?;
        u64::try_from(v).map_err(|_| MappingError::OutOfRange {
            record: self.record,
            field,
            value: v.to_string(),
        })
    }

    /// A `["null", "long"]` field that must be non-negative when present.
    pub(crate) fn optional_u64(
        &mut self,
        field: &'static str,
    ) -> Result<Option<u64>, MappingError> {
        match self.take(field)? {
            Value::Null => Ok(None),
            Value::Long(v) => u64::try_from(v)
                .map(Some)
                .map_err(|_| MappingError::OutOfRange {
                    record: self.record,
                    field,
                    value: v.to_string(),
                }),
            other => Err(self.wrong(field, "null or long", &other)),
        }
    }

    /// A `["null", "string"]` field.
    pub(crate) fn optional_string(
        &mut self,
        field: &'static str,
    ) -> Result<Option<String>, MappingError> {
        match self.take(field)? {
            Value::Null => Ok(None),
            Value::String(s) => Ok(Some(s)),
            other => Err(self.wrong(field, "null or string", &other)),
        }
    }

    /// A `timestamp-millis` field (plain `long` is accepted from older writers).
    pub(crate) fn timestamp(&mut self, field: &'static str) -> Result<i64, MappingError> {
        match self.take(field)? {
            Value::TimestampMillis(v) | Value::Long(v) => Ok(v),
            other => Err(self.wrong(field, "timestamp-millis", &other)),
        }
    }

    /// A `uuid` string field.
    pub(crate) fn uuid(&mut self, field: &'static str) -> Result<Uuid, MappingError> {
        match self.take(field)? {
            Value::Uuid(u) => Ok(u),
            Value::String(s) => Uuid::parse_str(&s).map_err(|_| MappingError::InvalidUuid {
                record: self.record,
                field,
            }),
            other => Err(self.wrong(field, "uuid", &other)),
        }
    }

    /// An `enum` field's symbol.
    pub(crate) fn symbol(&mut self, field: &'static str) -> Result<String, MappingError> {
        match self.take(field)? {
            Value::Enum(_, symbol) => Ok(symbol),
            other => Err(self.wrong(field, "enum", &other)),
        }
    }

    /// An `array` field's items.
    pub(crate) fn array(&mut self, field: &'static str) -> Result<Vec<Value>, MappingError> {
        match self.take(field)? {
            Value::Array(items) => Ok(items),
            other => Err(self.wrong(field, "array", &other)),
        }
    }

    /// A union field: the branch index and its value, as schema resolution left them.
    pub(crate) fn union(&mut self, field: &'static str) -> Result<(u32, Value), MappingError> {
        match self.take_raw(field)? {
            Value::Union(index, value) => Ok((index, *value)),
            other => Err(self.wrong(field, "union", &other)),
        }
    }

    /// Maps a domain validation failure of one field.
    pub(crate) fn invalid(
        &self,
        field: &'static str,
        reason: impl std::fmt::Display,
    ) -> MappingError {
        MappingError::Invalid {
            record: self.record,
            field,
            reason: reason.to_string(),
        }
    }
}

/// Schema resolution may hand back `["null", T]` fields as union values; the branch is implied.
fn unwrap_union(value: Value) -> Value {
    match value {
        Value::Union(_, inner) => *inner,
        other => other,
    }
}
