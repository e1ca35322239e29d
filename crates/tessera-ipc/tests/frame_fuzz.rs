//! Arbitrary bytes, delivered in arbitrary pieces, never make the frame reader panic or hold more
//! than the cap, and whatever it accepts as a message survives a re-encode.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use tessera_ipc::frame::{FrameError, ReadLimits, decode_body, encode_frame, read_frame};
use tessera_ipc::{ClientMsg, ServerMsg};
use tokio::io::{AsyncRead, ReadBuf};

/// Hands out `data` in the given chunk sizes (cycled), like a socket would.
struct Chunked {
    data: Vec<u8>,
    pos: usize,
    chunks: Vec<usize>,
    turn: usize,
}

impl AsyncRead for Chunked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let chunk = this.chunks[this.turn % this.chunks.len()];
        this.turn += 1;
        let n = chunk.min(buf.remaining()).min(this.data.len() - this.pos);
        buf.put_slice(&this.data[this.pos..this.pos + n]);
        this.pos += n;
        Poll::Ready(Ok(()))
    }
}

const CAP: usize = 1024;

fn run(data: Vec<u8>, chunks: Vec<usize>) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut reader = Chunked {
            data,
            pos: 0,
            chunks,
            turn: 0,
        };
        let limits = ReadLimits {
            max_len: CAP,
            frame_deadline: Duration::from_secs(5),
            idle_timeout: None,
        };
        loop {
            match read_frame(&mut reader, &limits).await {
                Ok(Some(body)) => {
                    prop_assert!(body.len() <= CAP);
                    prop_assert!(body.capacity() <= CAP);
                    if let Ok(msg) = decode_body::<ClientMsg>(&body) {
                        let again = encode_frame(&msg, tessera_ipc::MAX_FRAME_LEN).unwrap();
                        let back: ClientMsg = decode_body(&again[4..]).unwrap();
                        prop_assert_eq!(back, msg);
                    }
                    let _ = decode_body::<ServerMsg>(&body);
                }
                Ok(None) => return Ok(()),
                Err(FrameError::Oversized { len, max }) => {
                    prop_assert!(len > max);
                    prop_assert_eq!(max, CAP);
                    return Ok(());
                }
                Err(FrameError::Truncated { expected, got }) => {
                    prop_assert!(got < expected);
                    return Ok(());
                }
                Err(e) => return Err(TestCaseError::fail(format!("unexpected error {e}"))),
            }
        }
    })
}

/// Bytes that look like frames: a plausible length (sometimes lying) and JSON-ish content.
fn framed() -> impl Strategy<Value = Vec<u8>> {
    let body = prop_oneof![
        Just(br#"{"type":"hello","protocol":1,"app":{"product_id":"p","name":"n","version":"1","pid":1}}"#.to_vec()),
        Just(br#"{"type":"request","id":3,"call":{"op":"checkout","feature":"f"}}"#.to_vec()),
        Just(br#"{"type":"goodbye"}"#.to_vec()),
        proptest::collection::vec(any::<u8>(), 0..64),
        "[ -~]{0,80}".prop_map(String::into_bytes),
    ];
    proptest::collection::vec((body, -3i64..3), 0..6).prop_map(|frames| {
        let mut out = Vec::new();
        for (body, lie) in frames {
            let len = u32::try_from((i64::try_from(body.len()).unwrap() + lie).max(0)).unwrap();
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&body);
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic_or_exceed_the_cap(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        chunks in proptest::collection::vec(1usize..64, 1..8),
    ) {
        run(data, chunks)?;
    }

    #[test]
    fn frame_like_bytes_never_panic_or_exceed_the_cap(
        data in framed(),
        chunks in proptest::collection::vec(1usize..32, 1..8),
    ) {
        run(data, chunks)?;
    }
}
