//! The file form: a text envelope around the canonical JSON payload and its signature.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::error::{Location, VerifyError};

/// Largest License file accepted, in bytes.
pub const MAX_FILE_LEN: usize = 64 * 1024;
/// Width of the base64 lines.
pub const LINE_WIDTH: usize = 64;

/// First line of a License file.
pub const HEADER: &str = "-----BEGIN TESSERA LICENSE-----";
/// Line that ends the payload and starts the signature block.
pub const SIGNATURE_HEADER: &str = "-----BEGIN TESSERA SIGNATURE-----";
/// Last line of a License file.
pub const FOOTER: &str = "-----END TESSERA LICENSE-----";
const ALGORITHM_PREFIX: &str = "Algorithm: ";
const KEY_ID_PREFIX: &str = "Key-Id: ";

/// Prepended to the payload to form the signed message of the file form, so that a signature
/// made for one purpose (a string-form License, an identity override) is never valid for another.
pub const SIGNING_CONTEXT: &[u8] = b"TESSERA LICENSE FILE V1\n";

/// A License file taken apart, signature not yet checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The canonical JSON payload.
    pub payload: Vec<u8>,
    /// The algorithm name from the signature block.
    pub algorithm: String,
    /// The key id from the signature block.
    pub key_id: String,
    /// The signature bytes.
    pub signature: Vec<u8>,
}

impl Envelope {
    /// The message the signature covers: [`SIGNING_CONTEXT`] followed by the payload.
    #[must_use]
    pub fn signed_message(&self) -> Vec<u8> {
        signed_message(&self.payload)
    }
}

/// [`SIGNING_CONTEXT`] followed by `payload`.
#[must_use]
pub fn signed_message(payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + payload.len());
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(payload);
    message
}

/// Writes the envelope with `\n` line endings and a final newline.
#[must_use]
pub fn encode(payload: &[u8], algorithm: &str, key_id: &str, signature: &[u8]) -> String {
    let mut out = String::with_capacity(payload.len() * 4 / 3 + signature.len() * 4 / 3 + 256);
    out.push_str(HEADER);
    out.push('\n');
    push_wrapped(&mut out, &STANDARD.encode(payload));
    out.push_str(SIGNATURE_HEADER);
    out.push('\n');
    out.push_str(ALGORITHM_PREFIX);
    out.push_str(algorithm);
    out.push('\n');
    out.push_str(KEY_ID_PREFIX);
    out.push_str(key_id);
    out.push('\n');
    push_wrapped(&mut out, &STANDARD.encode(signature));
    out.push_str(FOOTER);
    out.push('\n');
    out
}

fn push_wrapped(out: &mut String, b64: &str) {
    // base64 output is ASCII, so byte chunks are char boundaries.
    for chunk in b64.as_bytes().chunks(LINE_WIDTH) {
        out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        out.push('\n');
    }
}

/// Takes a License file apart.
///
/// Accepted variations, none of which is covered by the signature: `\r\n` instead of `\n` line
/// endings (all lines alike) and a missing final line ending. Nothing else varies.
///
/// # Errors
/// [`VerifyError::TooLarge`] above [`MAX_FILE_LEN`]; [`VerifyError::Malformed`] naming the line.
pub fn decode(input: &[u8]) -> Result<Envelope, VerifyError> {
    if input.len() > MAX_FILE_LEN {
        return Err(VerifyError::TooLarge {
            len: input.len(),
            max: MAX_FILE_LEN,
        });
    }
    if let Some(at) = input.iter().position(|b| !b.is_ascii()) {
        return Err(VerifyError::malformed(
            Location::InputByte(at),
            "a License file is ASCII text; this byte is not ASCII",
        ));
    }
    let text = std::str::from_utf8(input).unwrap_or_default();
    let mut lines = Lines::new(text)?;

    lines.expect_exact(HEADER, "the first line must be the License header")?;
    let (payload, payload_line) = lines.base64_block(SIGNATURE_HEADER, "payload")?;
    let algorithm = lines.expect_prefixed(ALGORITHM_PREFIX)?;
    let key_id = lines.expect_prefixed(KEY_ID_PREFIX)?;
    let (signature, _) = lines.base64_block(FOOTER, "signature")?;
    if let Some((n, _)) = lines.next() {
        return Err(VerifyError::malformed(
            Location::Line(n),
            "nothing may follow the License footer",
        ));
    }
    if payload.is_empty() {
        return Err(VerifyError::malformed(
            Location::Line(payload_line),
            "the payload is empty",
        ));
    }
    Ok(Envelope {
        payload,
        algorithm: algorithm.to_owned(),
        key_id: key_id.to_owned(),
        signature,
    })
}

/// The lines of a License file, numbered from 1, with one line-ending style throughout.
struct Lines<'a> {
    rest: &'a str,
    crlf: bool,
    number: usize,
}

impl<'a> Lines<'a> {
    fn new(text: &'a str) -> Result<Self, VerifyError> {
        let crlf = text
            .split('\n')
            .next()
            .is_some_and(|first| first.ends_with('\r'));
        Ok(Self {
            rest: text,
            crlf,
            number: 0,
        })
    }

    fn next(&mut self) -> Option<(usize, &'a str)> {
        if self.rest.is_empty() {
            return None;
        }
        self.number += 1;
        let (line, rest) = match self.rest.split_once('\n') {
            Some((line, rest)) => (line, rest),
            None => (self.rest, ""),
        };
        self.rest = rest;
        Some((self.number, line))
    }

    /// The next line without its line ending, or an error naming the line.
    fn line(&mut self, missing: &str) -> Result<(usize, &'a str), VerifyError> {
        let at_end = self.rest.find('\n').is_none();
        let Some((n, raw)) = self.next() else {
            return Err(VerifyError::malformed(
                Location::Line(self.number + 1),
                missing.to_owned(),
            ));
        };
        // In a \r\n file every terminated line ends in \r; an unterminated last line has none.
        let line = if self.crlf && !at_end {
            raw.strip_suffix('\r').ok_or_else(|| {
                VerifyError::malformed(
                    Location::Line(n),
                    "the file mixes \\r\\n and \\n line endings",
                )
            })?
        } else {
            raw
        };
        if line.contains('\r') {
            return Err(VerifyError::malformed(
                Location::Line(n),
                "stray carriage return",
            ));
        }
        Ok((n, line))
    }

    fn expect_exact(&mut self, expected: &str, what: &str) -> Result<usize, VerifyError> {
        let (n, line) = self.line(what)?;
        if line != expected {
            return Err(VerifyError::malformed(
                Location::Line(n),
                format!("{what}: {expected}"),
            ));
        }
        Ok(n)
    }

    fn expect_prefixed(&mut self, prefix: &str) -> Result<&'a str, VerifyError> {
        let what = format!("expected a line starting with {prefix:?}");
        let (n, line) = self.line(&what)?;
        line.strip_prefix(prefix)
            .filter(|value| !value.is_empty())
            .ok_or_else(|| VerifyError::malformed(Location::Line(n), what))
    }

    /// Base64 lines up to the `terminator` line, decoded. Returns the bytes and the first line's
    /// number.
    fn base64_block(
        &mut self,
        terminator: &str,
        what: &'static str,
    ) -> Result<(Vec<u8>, usize), VerifyError> {
        let first = self.number + 1;
        let mut b64 = String::new();
        let mut last_short: Option<usize> = None;
        loop {
            let (n, line) = self.line(&format!("the file ends inside the {what}"))?;
            if line == terminator {
                if b64.is_empty() {
                    return Err(VerifyError::malformed(
                        Location::Line(n),
                        format!("the {what} is missing"),
                    ));
                }
                break;
            }
            if let Some(short) = last_short {
                return Err(VerifyError::malformed(
                    Location::Line(short),
                    format!(
                        "only the last {what} line may be shorter than {LINE_WIDTH} characters"
                    ),
                ));
            }
            if line.is_empty() || line.len() > LINE_WIDTH {
                return Err(VerifyError::malformed(
                    Location::Line(n),
                    format!("{what} lines are 1 to {LINE_WIDTH} base64 characters"),
                ));
            }
            if line.len() < LINE_WIDTH {
                last_short = Some(n);
            }
            b64.push_str(line);
        }
        let bytes = STANDARD.decode(&b64).map_err(|e| {
            VerifyError::malformed(
                Location::Line(first),
                format!("the {what} is not base64: {e}"),
            )
        })?;
        Ok((bytes, first))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> String {
        encode(
            &[7u8; 100],
            "RSA-PSS-SHA256",
            "0123456789abcdef",
            &[9u8; 384],
        )
    }

    #[test]
    fn round_trips_and_wraps_at_64() {
        let text = sample();
        assert!(
            text.lines()
                .all(|l| l.len() <= LINE_WIDTH || l == SIGNATURE_HEADER)
        );
        let env = decode(text.as_bytes()).unwrap();
        assert_eq!(env.payload, vec![7u8; 100]);
        assert_eq!(env.algorithm, "RSA-PSS-SHA256");
        assert_eq!(env.key_id, "0123456789abcdef");
        assert_eq!(env.signature, vec![9u8; 384]);
    }

    #[test]
    fn accepts_crlf_and_a_missing_final_newline_only() {
        let text = sample();
        let crlf = text.replace('\n', "\r\n");
        assert_eq!(
            decode(crlf.as_bytes()).unwrap(),
            decode(text.as_bytes()).unwrap()
        );
        let trimmed = text.trim_end();
        assert!(decode(trimmed.as_bytes()).is_ok());
        let mixed = text.replacen('\n', "\r\n", 2);
        assert!(matches!(
            decode(mixed.as_bytes()),
            Err(VerifyError::Malformed { .. })
        ));
        let extra = format!("{text}\n");
        assert!(matches!(
            decode(extra.as_bytes()),
            Err(VerifyError::Malformed {
                location: Location::Line(_),
                ..
            })
        ));
    }

    #[test]
    fn names_the_offending_line() {
        let text = sample().replacen("Key-Id: ", "Key-ID: ", 1);
        let line = text.lines().position(|l| l.starts_with("Key-ID")).unwrap() + 1;
        match decode(text.as_bytes()) {
            Err(VerifyError::Malformed {
                location: Location::Line(n),
                ..
            }) => assert_eq!(n, line),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn refuses_rewrapped_base64() {
        let text = sample();
        let mut lines: Vec<&str> = text.lines().collect();
        let joined = format!("{}{}", lines[1], lines[2]);
        lines.splice(1..3, [joined.as_str()]);
        let rewrapped = lines.join("\n");
        assert!(matches!(
            decode(rewrapped.as_bytes()),
            Err(VerifyError::Malformed {
                location: Location::Line(2),
                ..
            })
        ));
    }

    #[test]
    fn bounds_the_size_and_refuses_non_ascii() {
        let big = vec![b'A'; MAX_FILE_LEN + 1];
        assert!(matches!(decode(&big), Err(VerifyError::TooLarge { .. })));
        let text = sample().replacen("RSA", "RSÄ", 1);
        assert!(matches!(
            decode(text.as_bytes()),
            Err(VerifyError::Malformed {
                location: Location::InputByte(_),
                ..
            })
        ));
    }
}
