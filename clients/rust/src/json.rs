//! Conversions between `serde_json::Value` and the `google.protobuf.Value`
//! that carries JSON on the wire, and between JSON and [`Payload`].
//!
//! JSON numbers travel as `f64` (as in every protobuf JSON mapping): integers
//! beyond ±2^53 lose precision. Coming back, a number with no fractional part
//! that fits in ±2^53 becomes a JSON integer again, so `100` round-trips as
//! `100`, not `100.0`. Numbers JSON cannot represent (NaN, infinities) become
//! `null`, as `serde_json` does.

use kar_proto::v1::{Payload, payload};
use prost_types::{ListValue, Struct, Value, value::Kind};

use crate::error::{Error, Result};

/// The largest integer an `f64` holds exactly.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_992.0;

/// Converts a JSON value into a `google.protobuf.Value`.
pub fn json_to_value(json: serde_json::Value) -> Value {
    let kind = match json {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(f64::NAN)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(items) => {
            Kind::ListValue(ListValue { values: items.into_iter().map(json_to_value).collect() })
        }
        serde_json::Value::Object(fields) => {
            Kind::StructValue(Struct { fields: fields.into_iter().map(|(k, v)| (k, json_to_value(v))).collect() })
        }
    };
    Value { kind: Some(kind) }
}

/// Converts a `google.protobuf.Value` into a JSON value. An unset value is
/// `null`.
pub fn value_to_json(value: Value) -> serde_json::Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(b),
        Some(Kind::NumberValue(n)) => number_to_json(n),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s),
        Some(Kind::ListValue(list)) => serde_json::Value::Array(list.values.into_iter().map(value_to_json).collect()),
        Some(Kind::StructValue(s)) => {
            serde_json::Value::Object(s.fields.into_iter().map(|(k, v)| (k, value_to_json(v))).collect())
        }
    }
}

fn number_to_json(n: f64) -> serde_json::Value {
    if n.fract() == 0.0 && n.abs() <= MAX_SAFE_INTEGER {
        // Exact: |n| <= 2^53 fits in i64 without rounding.
        serde_json::Value::from(n as i64)
    } else {
        // NaN and infinities have no JSON form and become null.
        serde_json::Number::from_f64(n).map_or(serde_json::Value::Null, serde_json::Value::Number)
    }
}

/// Wraps a JSON value into a [`Payload`].
pub fn json_payload(json: serde_json::Value) -> Payload {
    Payload { kind: Some(payload::Kind::Json(json_to_value(json))) }
}

/// Reads a [`Payload`] as JSON: an empty payload (a method that returned
/// nothing) is `null`; a typed protobuf message is an
/// [`Error::TypedPayload`].
pub fn payload_to_json(payload: Payload) -> Result<serde_json::Value> {
    match payload.kind {
        None => Ok(serde_json::Value::Null),
        Some(payload::Kind::Json(value)) => Ok(value_to_json(value)),
        Some(payload::Kind::Typed(any)) => Err(Error::TypedPayload { type_url: any.type_url }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(json: serde_json::Value) -> serde_json::Value {
        value_to_json(json_to_value(json))
    }

    #[test]
    fn scalars_round_trip() {
        for v in [json!(null), json!(true), json!(false), json!("héllo"), json!(""), json!(1.5), json!(-0.25)] {
            assert_eq!(round_trip(v.clone()), v);
        }
    }

    #[test]
    fn integers_stay_integers() {
        assert_eq!(round_trip(json!(100)), json!(100));
        assert_eq!(round_trip(json!(-7)), json!(-7));
        assert_eq!(round_trip(json!(9_007_199_254_740_992_i64)), json!(9_007_199_254_740_992_i64));
        assert!(round_trip(json!(100)).is_i64());
    }

    #[test]
    fn numbers_are_carried_as_f64() {
        let value = json_to_value(json!(3));
        assert_eq!(value.kind, Some(Kind::NumberValue(3.0)));
    }

    #[test]
    fn lists_and_objects_round_trip() {
        let v = json!({"a": [1, "two", {"three": null}], "b": {}, "c": []});
        assert_eq!(round_trip(v.clone()), v);
    }

    #[test]
    fn non_finite_numbers_and_unset_values_are_null() {
        let nan = Value { kind: Some(Kind::NumberValue(f64::NAN)) };
        let inf = Value { kind: Some(Kind::NumberValue(f64::INFINITY)) };
        assert_eq!(value_to_json(nan), json!(null));
        assert_eq!(value_to_json(inf), json!(null));
        assert_eq!(value_to_json(Value { kind: None }), json!(null));
    }

    #[test]
    fn an_empty_payload_reads_as_null_and_a_typed_one_is_refused() {
        assert_eq!(payload_to_json(Payload { kind: None }).unwrap(), json!(null));
        assert_eq!(payload_to_json(json_payload(json!([1, 2]))).unwrap(), json!([1, 2]));
        let typed = Payload {
            kind: Some(payload::Kind::Typed(prost_types::Any {
                type_url: "type.googleapis.com/bank.v1.Balance".into(),
                value: vec![],
            })),
        };
        assert!(matches!(payload_to_json(typed), Err(Error::TypedPayload { .. })));
    }
}
