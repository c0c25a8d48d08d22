//! The UDF protocol, as pure functions: a batch of record values becomes a
//! JSON array; the answer must be an array of the same length whose
//! element `i` is the new value of record `i` (an object) or `null`.

use serde_json::Value;

/// What the service said about one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// The record's new value.
    Replace(Value),
    /// `null`: drop the record.
    Drop,
    /// Not an object or `null`: this record failed.
    Invalid(String),
}

/// The request body for `values`.
#[must_use]
pub fn request<'a>(values: impl Iterator<Item = &'a Value>) -> Vec<u8> {
    crate::http::json_array(values)
}

/// Reads the answer to a batch of `n` records.
///
/// # Errors
/// A message saying how the answer breaks the protocol (not JSON, not an
/// array, wrong length); the whole batch has failed.
pub fn answer(body: &[u8], n: usize) -> Result<Vec<Verdict>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        let start: String = String::from_utf8_lossy(body).chars().take(80).collect();
        format!("the answer is not JSON ({e}): {start:?}")
    })?;
    let Value::Array(items) = value else {
        return Err(format!(
            "the answer must be a JSON array of {n} elements, got {}",
            kind(&value)
        ));
    };
    if items.len() != n {
        return Err(format!(
            "the answer has {} elements for {n} records; it must have one per record, in order",
            items.len()
        ));
    }
    Ok(items
        .into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            Value::Null => Verdict::Drop,
            Value::Object(_) => Verdict::Replace(v),
            other => Verdict::Invalid(format!(
                "element {i} of the answer is {}; expected an object (the new record) or null (drop it)",
                kind(&other)
            )),
        })
        .collect())
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_request_is_the_array_of_values() {
        let vals = [json!({"a": 1}), json!("x")];
        let body = request(vals.iter());
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap(),
            json!([{"a": 1}, "x"])
        );
        assert_eq!(request([].iter()), b"[]");
    }

    #[test]
    fn each_element_replaces_drops_or_fails_its_record() {
        let got = answer(br#"[{"a":2},null,3]"#, 3).unwrap();
        assert_eq!(got[0], Verdict::Replace(json!({"a": 2})));
        assert_eq!(got[1], Verdict::Drop);
        assert!(
            matches!(&got[2], Verdict::Invalid(m) if m.contains("element 2") && m.contains("a number"))
        );
    }

    #[test]
    fn a_malformed_answer_fails_the_batch() {
        assert!(
            answer(b"[{}]", 2)
                .unwrap_err()
                .contains("1 elements for 2 records")
        );
        assert!(answer(b"<html>oops", 1).unwrap_err().contains("not JSON"));
        assert!(
            answer(br#"{"a":1}"#, 1)
                .unwrap_err()
                .contains("got an object")
        );
    }
}
