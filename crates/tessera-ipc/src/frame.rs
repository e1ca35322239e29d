//! Frames: a u32 big-endian length, then that many bytes of JSON.
//!
//! The reader never trusts the length: it refuses anything above the cap before allocating, so a
//! peer cannot make us reserve more than [`MAX_FRAME_LEN`] bytes per connection. Idle time between
//! frames is allowed (up to an optional idle timeout); once the first byte of a frame has arrived
//! the whole frame must follow within the frame deadline, so a stalled peer cannot pin a task.

use std::io;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

/// Largest frame body either side sends or accepts.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Length of the frame header.
pub const HEADER_LEN: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The header announced a body larger than the cap.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    Oversized {
        /// Announced (or, when sending, actual) body length.
        len: usize,
        /// The cap in force.
        max: usize,
    },
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed after {got} of {expected} bytes of a frame")]
    Truncated {
        /// Bytes the frame needed, header included.
        expected: usize,
        /// Bytes that arrived.
        got: usize,
    },
    /// A started frame did not complete within the frame deadline.
    #[error("frame not completed within {0:?} of its first byte")]
    Stalled(Duration),
    /// No frame started within the idle timeout.
    #[error("no frame within the {0:?} idle timeout")]
    Idle(Duration),
    /// The body is not the JSON message expected.
    #[error("frame body is not a valid message")]
    Malformed(#[source] serde_json::Error),
    /// A message could not be serialised.
    #[error("message could not be encoded")]
    Encode(#[source] serde_json::Error),
    /// The transport failed.
    #[error("socket read or write failed")]
    Io(#[source] io::Error),
}

/// Deadlines applied while reading frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// Largest accepted body (at most [`MAX_FRAME_LEN`]).
    pub max_len: usize,
    /// Time a frame may take from its first byte to its last.
    pub frame_deadline: Duration,
    /// Time allowed between frames; `None` waits forever.
    pub idle_timeout: Option<Duration>,
}

impl Default for ReadLimits {
    fn default() -> Self {
        Self {
            max_len: MAX_FRAME_LEN,
            frame_deadline: Duration::from_secs(5),
            idle_timeout: None,
        }
    }
}

/// Encodes `msg` as one frame (header and body).
///
/// # Errors
/// [`FrameError::Encode`] if serialisation fails, [`FrameError::Oversized`] if the body exceeds
/// `max_len`.
pub fn encode_frame<T: Serialize>(msg: &T, max_len: usize) -> Result<Vec<u8>, FrameError> {
    let mut out = vec![0u8; HEADER_LEN];
    serde_json::to_writer(&mut out, msg).map_err(FrameError::Encode)?;
    let len = out.len() - HEADER_LEN;
    let header = u32::try_from(len)
        .ok()
        .filter(|_| len <= max_len.min(MAX_FRAME_LEN))
        .ok_or(FrameError::Oversized { len, max: max_len })?;
    out[..HEADER_LEN].copy_from_slice(&header.to_be_bytes());
    Ok(out)
}

/// Decodes a frame body into a message.
///
/// # Errors
/// [`FrameError::Malformed`] when the body is not a valid `T`.
pub fn decode_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    serde_json::from_slice(body).map_err(FrameError::Malformed)
}

/// Reads one frame body from `reader`.
///
/// Returns `Ok(None)` on a clean end of stream between frames.
///
/// # Errors
/// See [`FrameError`]; every error means the connection is no longer in a known state and should
/// be closed.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limits: &ReadLimits,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_LEN];
    let first = match limits.idle_timeout {
        Some(idle) => tokio::time::timeout(idle, reader.read(&mut header))
            .await
            .map_err(|_| FrameError::Idle(idle))?,
        None => reader.read(&mut header).await,
    }
    .map_err(FrameError::Io)?;
    if first == 0 {
        return Ok(None);
    }
    let deadline = Instant::now() + limits.frame_deadline;
    tokio::time::timeout_at(deadline, read_rest(reader, header, first, limits.max_len))
        .await
        .map_err(|_| FrameError::Stalled(limits.frame_deadline))?
        .map(Some)
}

async fn read_rest<R: AsyncRead + Unpin>(
    reader: &mut R,
    mut header: [u8; HEADER_LEN],
    mut have: usize,
    max_len: usize,
) -> Result<Vec<u8>, FrameError> {
    while have < HEADER_LEN {
        let n = reader
            .read(&mut header[have..])
            .await
            .map_err(FrameError::Io)?;
        if n == 0 {
            return Err(FrameError::Truncated {
                expected: HEADER_LEN,
                got: have,
            });
        }
        have += n;
    }
    let announced = u32::from_be_bytes(header);
    let max = max_len.min(MAX_FRAME_LEN);
    let len = usize::try_from(announced)
        .ok()
        .filter(|len| *len <= max)
        .ok_or(FrameError::Oversized {
            len: usize::try_from(announced).unwrap_or(usize::MAX),
            max,
        })?;
    let mut body = vec![0u8; len];
    let mut got = 0;
    while got < len {
        let n = reader
            .read(&mut body[got..])
            .await
            .map_err(FrameError::Io)?;
        if n == 0 {
            return Err(FrameError::Truncated {
                expected: HEADER_LEN + len,
                got: HEADER_LEN + got,
            });
        }
        got += n;
    }
    Ok(body)
}

/// Writes an already encoded frame and flushes it.
///
/// # Errors
/// [`FrameError::Io`] when the transport fails.
pub async fn write_frame<W: AsyncWrite + Unpin>(
    writer: &mut W,
    frame: &[u8],
) -> Result<(), FrameError> {
    writer.write_all(frame).await.map_err(FrameError::Io)?;
    writer.flush().await.map_err(FrameError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> ReadLimits {
        ReadLimits {
            max_len: 16,
            frame_deadline: Duration::from_secs(1),
            idle_timeout: None,
        }
    }

    #[tokio::test]
    async fn reads_frames_back_to_back_then_clean_eof() {
        let mut bytes = encode_frame(&"hi", 16).unwrap();
        bytes.extend(encode_frame(&[1, 2, 3], 16).unwrap());
        let mut r = bytes.as_slice();
        assert_eq!(
            read_frame(&mut r, &limits()).await.unwrap().unwrap(),
            b"\"hi\""
        );
        assert_eq!(
            read_frame(&mut r, &limits()).await.unwrap().unwrap(),
            b"[1,2,3]"
        );
        assert!(read_frame(&mut r, &limits()).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn refuses_oversized_before_reading_body() {
        let mut r: &[u8] = &[0, 0, 0, 17];
        let err = read_frame(&mut r, &limits()).await.unwrap_err();
        assert!(
            matches!(err, FrameError::Oversized { len: 17, max: 16 }),
            "{err}"
        );
        assert!(matches!(
            encode_frame(&"a string far too long", 16),
            Err(FrameError::Oversized { .. })
        ));
    }

    #[tokio::test]
    async fn truncated_header_and_body_are_reported() {
        let mut r: &[u8] = &[0, 0];
        let err = read_frame(&mut r, &limits()).await.unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Truncated {
                    expected: 4,
                    got: 2
                }
            ),
            "{err}"
        );
        let mut r: &[u8] = &[0, 0, 0, 5, b'a'];
        let err = read_frame(&mut r, &limits()).await.unwrap_err();
        assert!(
            matches!(
                err,
                FrameError::Truncated {
                    expected: 9,
                    got: 5
                }
            ),
            "{err}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_frame_and_idle_peer_time_out() {
        let (mut client, mut server) = tokio::io::duplex(64);
        client.write_all(&[0, 0, 0, 8, b'{']).await.unwrap();
        let err = read_frame(&mut server, &limits()).await.unwrap_err();
        assert!(matches!(err, FrameError::Stalled(_)), "{err}");

        let (_client, mut server) = tokio::io::duplex(64);
        let idle = ReadLimits {
            idle_timeout: Some(Duration::from_secs(30)),
            ..limits()
        };
        let err = read_frame(&mut server, &idle).await.unwrap_err();
        assert!(matches!(err, FrameError::Idle(_)), "{err}");
    }
}
