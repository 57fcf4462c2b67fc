//! The awsJson1_1 protocol: `POST /` with `X-Amz-Target: <Service>.<Operation>` and a JSON body;
//! errors as `{"__type": code, "message": ...}` (and `x-amzn-errortype`); timestamps as epoch
//! seconds.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::ApiError;

/// The content type of requests and responses.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// An error body.
pub fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "__type": code, "message": message }).to_string()
}

/// Epoch seconds with milliseconds, as AWS's JSON protocols send timestamps.
pub fn time(t: SystemTime) -> Value {
    let ms = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    Value::from(ms as f64 / 1000.0)
}

/// A JSON request taken apart: its `X-Amz-Target`'s service prefix and operation, and its body
/// as an object. Which service answers is `api::dispatch_json`'s business.
pub fn parse<'t>(
    target: &'t str,
    content_type: &str,
    body: &[u8],
) -> Result<(&'t str, &'t str, Input), ApiError> {
    let (service, operation) = target.split_once('.').ok_or_else(|| {
        ApiError::new(
            "UnknownOperationException",
            format!("malformed X-Amz-Target {target:?}: expected Service.Operation"),
        )
    })?;
    if !content_type.is_empty() && !content_type.starts_with("application/x-amz-json-") {
        return Err(ApiError::new(
            "SerializationException",
            format!("expected Content-Type {CONTENT_TYPE}, got {content_type:?}"),
        ));
    }
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Map::new())
    } else {
        serde_json::from_slice(body).map_err(|e| {
            ApiError::new(
                "SerializationException",
                format!("the request body is not valid JSON: {e}"),
            )
        })?
    };
    let Value::Object(input) = input else {
        return Err(ApiError::new(
            "SerializationException",
            "the request body must be a JSON object",
        ));
    };
    Ok((service, operation, Input(input)))
}

/// A JSON request body with typed accessors whose errors name the member.
#[derive(Debug)]
pub struct Input(pub Map<String, Value>);

impl Input {
    /// A string member.
    pub fn str(&self, name: &str) -> Result<Option<&str>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(name, "a string")),
        }
    }

    /// A required string member.
    pub fn req(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name)?.filter(|s| !s.is_empty()).ok_or_else(|| {
            ApiError::new("InvalidParameterException", format!("{name} is required"))
        })
    }

    /// An integer member in `lo..=hi`.
    pub fn int(&self, name: &str, lo: i64, hi: i64) -> Result<Option<i64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => match v.as_i64() {
                Some(n) if (lo..=hi).contains(&n) => Ok(Some(n)),
                _ => Err(invalid(name, &format!("a whole number from {lo} to {hi}"))),
            },
        }
    }

    /// A `u32` member in `lo..=hi`.
    pub fn u32(&self, name: &str, lo: u32, hi: u32) -> Result<Option<u32>, ApiError> {
        Ok(self
            .int(name, i64::from(lo), i64::from(hi))?
            .and_then(|n| u32::try_from(n).ok()))
    }

    /// A list of strings.
    pub fn strings(&self, name: &str) -> Result<Vec<String>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| invalid(name, "a list of strings"))
                })
                .collect(),
            Some(_) => Err(invalid(name, "a list of strings")),
        }
    }

    /// A nested object.
    pub fn object(&self, name: &str) -> Result<Option<Input>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(m)) => Ok(Some(Input(m.clone()))),
            Some(_) => Err(invalid(name, "an object")),
        }
    }

    /// A boolean member.
    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(invalid(name, "true or false")),
        }
    }
}

fn invalid(name: &str, expected: &str) -> ApiError {
    ApiError::new(
        "InvalidParameterException",
        format!("invalid value for {name}: expected {expected}"),
    )
}
