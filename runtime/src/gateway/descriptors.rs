//! The descriptors the gateway is driven by: the `kar.v1` contract (with its
//! `google.api.http` annotations) plus `google.rpc` (for error details), and
//! the proto3 JSON options used everywhere in the gateway.

use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor, SerializeOptions};

/// The descriptor pool and the JSON mapping settings.
#[derive(Clone, Debug)]
pub(crate) struct Descriptors {
    pool: DescriptorPool,
}

impl Descriptors {
    /// Loads the contract's descriptor set and the `google.rpc` types.
    pub(crate) fn load() -> Result<Self, prost_reflect::DescriptorError> {
        let mut pool = DescriptorPool::decode(kar_proto::FILE_DESCRIPTOR_SET)?;
        pool.decode_file_descriptor_set(tonic_types::pb::FILE_DESCRIPTOR_SET)?;
        Ok(Self { pool })
    }

    /// The pool.
    pub(crate) fn pool(&self) -> &DescriptorPool {
        &self.pool
    }

    /// `google.protobuf.Any`, to render error details.
    pub(crate) fn any(&self) -> Option<MessageDescriptor> {
        self.pool.get_message_by_name("google.protobuf.Any")
    }

    /// `message` in its proto3 JSON form. Fields at their default value are
    /// written out (`"found": false` rather than nothing); unset message
    /// fields are not. 64-bit integers are strings, as the mapping says;
    /// integral doubles are written without a fraction (`1`, not `1.0`), as
    /// JSON numbers in `google.protobuf.Value` usually were.
    pub(crate) fn to_json(&self, message: &DynamicMessage) -> Result<serde_json::Value, serde_json::Error> {
        let options = SerializeOptions::new().skip_default_fields(false);
        let mut json = message.serialize_with_options(serde_json::value::Serializer, &options)?;
        integral_numbers(&mut json);
        Ok(json)
    }
}

/// Rewrites floats with no fractional part (within ±2^53) as integers.
fn integral_numbers(json: &mut serde_json::Value) {
    const EXACT: f64 = 9_007_199_254_740_992.0;
    match json {
        serde_json::Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() <= EXACT
            {
                *n = serde_json::Number::from(f as i64);
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(integral_numbers),
        serde_json::Value::Object(map) => map.values_mut().for_each(integral_numbers),
        _ => {}
    }
}
