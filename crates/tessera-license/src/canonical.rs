//! Canonical JSON: the one byte encoding a License payload may have.
//!
//! The rules (README.md "Canonical JSON" repeats them for ISVs writing their own issuer):
//! - UTF-8, no byte-order mark, no whitespace outside strings;
//! - object keys sorted by their UTF-8 bytes, each key once;
//! - numbers are integers only, in decimal, no sign unless negative, no leading zeros, no `-0`,
//!   no fraction, no exponent, within the range of `i64`/`u64`;
//! - strings escape `"` as `\"`, `\` as `\\`, U+0008/09/0A/0C/0D as `\b \t \n \f \r`, the other
//!   control characters below U+0020 as `\u00xx` (lower-case hex), and nothing else: every other
//!   character, including `/`, DEL and non-ASCII, is written as its own UTF-8 bytes.
//!
//! For documents with ASCII keys and integers below 2^53 this is exactly RFC 8785 (JCS), so an
//! issuer in another language can use a JCS library.
//!
//! A payload is accepted only if re-encoding what was parsed gives back the same bytes, which
//! rejects whitespace, unsorted or duplicate keys, floats and alternative escapes in one check.

use serde_json::Value;

/// Why a document could not be encoded canonically.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonicalError {
    /// The document holds a number that is not an integer in `i64`/`u64` range.
    #[error("the JSON number {0} is not an integer; canonical JSON carries integers only")]
    NotAnInteger(String),
}

/// Why bytes were refused as a canonical document.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotCanonical {
    /// The bytes are not JSON at all.
    #[error("not valid JSON (line {line}, column {column}): {message}")]
    Syntax {
        /// 1-based line of the error, as reported by the parser.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// The JSON holds something canonical JSON cannot carry.
    #[error(transparent)]
    Content(#[from] CanonicalError),
    /// Valid JSON, but not in canonical form: the first byte that differs from the canonical
    /// encoding of the same value is at `offset`.
    #[error("not in canonical form from byte {offset} on")]
    Differs {
        /// Byte offset of the first difference.
        offset: usize,
    },
}

/// Encodes `value` canonically.
///
/// # Errors
/// [`CanonicalError::NotAnInteger`] if the value holds a float.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = Vec::with_capacity(512);
    write_value(value, &mut out)?;
    Ok(out)
}

/// Parses `bytes` as JSON and accepts them only if they are the canonical encoding of the value.
///
/// # Errors
/// [`NotCanonical`] says where and why the bytes were refused.
pub fn parse(bytes: &[u8]) -> Result<Value, NotCanonical> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| NotCanonical::Syntax {
        line: e.line(),
        column: e.column(),
        message: syntax_message(&e),
    })?;
    let canonical = to_vec(&value)?;
    if canonical != bytes {
        let offset = canonical
            .iter()
            .zip(bytes)
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| canonical.len().min(bytes.len()));
        return Err(NotCanonical::Differs { offset });
    }
    Ok(value)
}

/// serde_json's Display appends " at line L column C", which [`NotCanonical::Syntax`] already
/// carries as fields.
fn syntax_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    match full.rfind(" at line ") {
        Some(cut) => full[..cut].to_owned(),
        None => full,
    }
}

fn write_value(value: &Value, out: &mut Vec<u8>) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                out.extend_from_slice(i.to_string().as_bytes());
            } else if let Some(u) = n.as_u64() {
                out.extend_from_slice(u.to_string().as_bytes());
            } else {
                return Err(CanonicalError::NotAnInteger(n.to_string()));
            }
        }
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(item, out)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Sorted here rather than trusting the map's order: serde_json's `preserve_order`
            // feature, if any crate in the build enables it, makes `Map` keep insertion order.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
            out.push(b'{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_string(key, out);
                out.push(b':');
                write_value(item, out)?;
            }
            out.push(b'}');
        }
    }
    Ok(())
}

fn write_string(s: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            0x00..=0x1f => {
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0x0f)]);
            }
            _ => out.push(b),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_sorted_without_whitespace_and_with_minimal_escapes() {
        let value = json!({"b": [1, -2, true, null], "a": "x\"y\\z\n\u{1}/é", "A": 18446744073709551615u64});
        let bytes = to_vec(&value).unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"A":18446744073709551615,"a":"x\"y\\z\n\u0001/é","b":[1,-2,true,null]}"#
        );
    }

    #[test]
    fn accepts_its_own_output() {
        let value = json!({"z": {"k": "v"}, "n": 0, "s": "\u{7f}\t"});
        let bytes = to_vec(&value).unwrap();
        assert_eq!(parse(&bytes).unwrap(), value);
    }

    #[test]
    fn refuses_floats() {
        assert!(matches!(
            to_vec(&json!({"x": 1.5})),
            Err(CanonicalError::NotAnInteger(_))
        ));
        assert!(matches!(
            parse(b"{\"x\":1e3}"),
            Err(NotCanonical::Content(_))
        ));
        assert!(matches!(
            parse(b"[18446744073709551616]"),
            Err(NotCanonical::Content(_))
        ));
        // serde_json reads -0 as a float.
        assert!(matches!(parse(b"[-0]"), Err(NotCanonical::Content(_))));
    }

    #[test]
    fn refuses_every_alternative_spelling_with_the_offset_of_the_difference() {
        let cases: &[(&[u8], usize)] = &[
            (br#"{"a":1, "b":2}"#, 7),  // whitespace
            (br#"{"b":1,"a":2}"#, 2),   // key order
            (br#"{"a":1,"a":1}"#, 6),   // duplicate key (the parser keeps one)
            (br#"{"a":"\u0041"}"#, 6),  // needless escape
            (br#"{"a":"\/"}"#, 6),      // escaped solidus
            (br#"{"a":1} "#, 7),        // trailing whitespace
            (br#"{"a":"\u001F"}"#, 11), // upper-case hex escape
        ];
        for (input, offset) in cases {
            assert_eq!(
                parse(input),
                Err(NotCanonical::Differs { offset: *offset }),
                "{}",
                String::from_utf8_lossy(input)
            );
        }
    }

    #[test]
    fn syntax_errors_say_where() {
        match parse(b"{\"a\":") {
            Err(NotCanonical::Syntax {
                line: 1,
                column,
                message,
            }) => {
                assert!(column >= 5);
                assert!(!message.contains(" at line "));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(matches!(
            parse(b"{\"a\":\"\xff\"}"),
            Err(NotCanonical::Syntax { .. })
        ));
    }
}
