//! The event-type catalog: the types a tenant emits, each with a description and an optional
//! JSON Schema that the data of every published event of that type must satisfy.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{EventType, InvalidField};

pub const MAX_DESCRIPTION_LEN: usize = 1024;
/// Serialized size cap of a schema or an example.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// What a user decides about an event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventTypeSpec {
    pub name: EventType,
    #[serde(default)]
    pub description: String,
    /// JSON Schema (draft 2020-12 unless `$schema` says otherwise) for the event's `data`.
    #[serde(default)]
    pub schema: Option<serde_json::Value>,
    /// Sample `data` for test sends; when absent one is generated from the schema.
    #[serde(default)]
    pub example: Option<serde_json::Value>,
}

/// A catalogued event type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventTypeDef {
    pub spec: EventTypeSpec,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Events published under this type (by their subject) that the fan-out refused: data
    /// not satisfying the schema, or any other reason an event is refused.
    pub rejected: u64,
}

/// A compiled schema, ready to check event data.
pub struct Schema(jsonschema::Validator);

impl std::fmt::Debug for Schema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Schema")
    }
}

impl Schema {
    /// Compiles `schema`. Remote `$ref`s are not fetched: a schema must be self-contained.
    pub fn compile(schema: &serde_json::Value) -> Result<Self, InvalidField> {
        jsonschema::validator_for(schema)
            .map(Self)
            .map_err(|e| InvalidField::new("schema", format!("is not a valid JSON Schema: {e}")))
    }

    /// `Err` names the first violation and where in the data it is.
    pub fn check(&self, data: &serde_json::Value) -> Result<(), String> {
        match self.0.iter_errors(data).next() {
            None => Ok(()),
            Some(e) => {
                let at = e.instance_path().to_string();
                let at = if at.is_empty() { "/".to_owned() } else { at };
                Err(format!("data does not match the schema of the event type at {at}: {e}"))
            }
        }
    }
}

impl EventTypeSpec {
    pub fn validate(self) -> Result<Self, InvalidField> {
        if self.description.len() > MAX_DESCRIPTION_LEN {
            return Err(InvalidField::new(
                "description",
                format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
            ));
        }
        if let Some(schema) = &self.schema {
            if schema.to_string().len() > MAX_SCHEMA_BYTES {
                return Err(InvalidField::new(
                    "schema",
                    format!("must be at most {MAX_SCHEMA_BYTES} bytes"),
                ));
            }
            let compiled = Schema::compile(schema)?;
            if let Some(example) = &self.example {
                compiled.check(example).map_err(|e| {
                    InvalidField::new("example", format!("does not match the schema: {e}"))
                })?;
            }
        }
        if self.example.as_ref().is_some_and(|e| e.to_string().len() > MAX_SCHEMA_BYTES) {
            return Err(InvalidField::new(
                "example",
                format!("must be at most {MAX_SCHEMA_BYTES} bytes"),
            ));
        }
        Ok(self)
    }

    /// Data for a test send: the example if there is one, else a value generated from the
    /// schema, else a stock object naming the type.
    pub fn sample_data(&self) -> serde_json::Value {
        if let Some(example) = &self.example {
            return example.clone();
        }
        match &self.schema {
            Some(schema) => sample_from_schema(schema, 0),
            None => stock_sample(&self.name),
        }
    }
}

/// Data for a test send of a type that is not catalogued.
pub fn stock_sample(event_type: &EventType) -> serde_json::Value {
    serde_json::json!({ "test": true, "type": event_type.as_str() })
}

/// A value satisfying the common shapes of a schema: `const`, `default`, `examples` and `enum`
/// first, then by `type`, with every required (or listed) property filled in.
fn sample_from_schema(schema: &serde_json::Value, depth: usize) -> serde_json::Value {
    use serde_json::{Value, json};
    let Value::Object(s) = schema else { return Value::Null };
    if depth > 8 {
        return Value::Null;
    }
    if let Some(v) = s.get("const").or_else(|| s.get("default")) {
        return v.clone();
    }
    if let Some(Value::Array(examples)) = s.get("examples")
        && let Some(first) = examples.first()
    {
        return first.clone();
    }
    if let Some(Value::Array(options)) = s.get("enum")
        && let Some(first) = options.first()
    {
        return first.clone();
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        if let Some(Value::Array(options)) = s.get(key)
            && let Some(first) = options.first()
        {
            return sample_from_schema(first, depth + 1);
        }
    }
    let ty = match s.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(Value::Array(ts)) => {
            ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null")
        }
        _ if s.contains_key("properties") => "object",
        _ => "object",
    };
    match ty {
        "object" => {
            let mut out = serde_json::Map::new();
            if let Some(Value::Object(props)) = s.get("properties") {
                for (name, prop) in props {
                    out.insert(name.clone(), sample_from_schema(prop, depth + 1));
                }
            }
            Value::Object(out)
        }
        "array" => {
            let item = s.get("items").map_or(Value::Null, |i| sample_from_schema(i, depth + 1));
            let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(1).clamp(1, 3);
            Value::Array((0..min).map(|_| item.clone()).collect())
        }
        "string" => match s.get("format").and_then(Value::as_str) {
            Some("date-time") => json!("2024-01-01T00:00:00Z"),
            Some("date") => json!("2024-01-01"),
            Some("email") => json!("user@example.com"),
            Some("uri") => json!("https://example.com/"),
            Some("uuid") => json!("00000000-0000-4000-8000-000000000000"),
            _ => {
                let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0);
                let min = usize::try_from(min).unwrap_or(0).min(64);
                json!(format!("{:x<min$}", "string"))
            }
        },
        "integer" => json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(0)),
        "number" => json!(s.get("minimum").and_then(Value::as_f64).unwrap_or(0.0)),
        "boolean" => json!(false),
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(schema: serde_json::Value) -> EventTypeSpec {
        EventTypeSpec {
            name: EventType::parse("contact-created").expect("valid"),
            description: "a contact was created".into(),
            schema: Some(schema),
            example: None,
        }
    }

    #[test]
    fn schema_checks_data_and_names_the_place() {
        let s = spec(serde_json::json!({
            "type": "object",
            "required": ["email"],
            "properties": {"email": {"type": "string", "format": "email"}, "age": {"type": "integer"}}
        }))
        .validate()
        .expect("valid");
        let schema = Schema::compile(s.schema.as_ref().expect("set")).expect("compiles");
        assert!(schema.check(&serde_json::json!({"email": "a@b.c"})).is_ok());
        let err =
            schema.check(&serde_json::json!({"email": "a@b.c", "age": "x"})).expect_err("bad");
        assert!(err.contains("/age"), "{err}");
        // A generated sample satisfies its own schema.
        assert!(schema.check(&s.sample_data()).is_ok(), "{}", s.sample_data());
    }

    #[test]
    fn refuses_a_broken_schema_or_a_mismatched_example() {
        let broken = spec(serde_json::json!({"type": 12}));
        assert_eq!(broken.validate().expect_err("refused").field, "schema");
        let mut mismatched = spec(serde_json::json!({"type": "object"}));
        mismatched.example = Some(serde_json::json!([1]));
        assert_eq!(mismatched.validate().expect_err("refused").field, "example");
    }
}
