//! A lean HTTP/1.1 client connection: one pre-built `GET`, one `write`, responses parsed in
//! place with `httparse` (the parser hyper uses), bodies skipped without being kept.
//!
//! Why not hyper's client: at `--rate max` the probe must keep up with wrk while recording
//! everything, and hyper's per-request machinery (request and header maps, dispatch channels,
//! a body channel) costs several µs per request, more than the kernel's share. This does only
//! what a probe needs — a request it built itself, responses framed by `content-length`,
//! `chunked` or connection close — and knows exactly how far an exchange got when it fails,
//! which is what error classification needs.

use bytes::{Buf as _, BytesMut};
use http::HeaderValue;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use crate::config::LbMarker;
use crate::error::ErrorKind;
use crate::tls::Stream;

/// Response heads larger than this are a protocol error.
const MAX_HEAD: usize = 64 * 1024;
/// Most response headers parsed.
const MAX_HEADERS: usize = 64;
const READ_CHUNK: usize = 16 * 1024;

/// What the probe keeps of a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) status: u16,
    pub(crate) version: Option<HeaderValue>,
    pub(crate) served_by: Option<HeaderValue>,
    pub(crate) by_lb: bool,
    /// On an error response: the target the load balancer was forwarding to
    /// (`x-localaws-target-id`, else `x-localaws-target`), so an LB error names a task.
    pub(crate) lb_target: Option<HeaderValue>,
    /// The connection can carry another request.
    pub(crate) reusable: bool,
}

/// How the body of a response is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// Reuses the last value of an attribution header when it repeats (it almost always does), so
/// that a response costs no allocation.
#[derive(Debug, Default)]
struct Cached(Option<HeaderValue>);

impl Cached {
    fn get(&mut self, bytes: &[u8]) -> Option<HeaderValue> {
        match &self.0 {
            Some(v) if v.as_bytes() == bytes => Some(v.clone()),
            _ => {
                let v = HeaderValue::from_bytes(bytes).ok()?;
                self.0 = Some(v.clone());
                Some(v)
            }
        }
    }
}

/// Per-connection parse state: the read buffer and the header caches.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    buf: BytesMut,
    version: Cached,
    served_by: Cached,
    lb_target: Cached,
}

fn io_kind(e: &std::io::Error) -> ErrorKind {
    if let Some(kind) = crate::tls::stream_error(e) {
        return kind;
    }
    match e.kind() {
        std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::ConnectionAborted
        | std::io::ErrorKind::BrokenPipe => ErrorKind::ConnectionReset,
        _ => ErrorKind::ConnectionClosed,
    }
}

impl Reader {
    /// Reads more bytes; end of stream is `connection_closed`.
    async fn fill<S: AsyncRead + Unpin>(&mut self, io: &mut S) -> Result<(), ErrorKind> {
        self.buf.reserve(READ_CHUNK);
        match io.read_buf(&mut self.buf).await {
            Ok(0) => Err(ErrorKind::ConnectionClosed),
            Ok(_) => Ok(()),
            Err(e) => Err(io_kind(&e)),
        }
    }

    /// Reads one complete response (skipping 1xx) and its body.
    pub(crate) async fn response<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        lb: &LbMarker,
    ) -> Result<Head, ErrorKind> {
        loop {
            let (head, framing, len) = loop {
                if let Some(parsed) = self.parse_head(lb)? {
                    break parsed;
                }
                if self.buf.len() > MAX_HEAD {
                    return Err(ErrorKind::Protocol);
                }
                self.fill(io).await?;
            };
            self.buf.advance(len);
            if (100..200).contains(&head.status) {
                continue; // 100 Continue, 103 Early Hints: the real response follows
            }
            self.body(io, framing).await?;
            return Ok(Head {
                // Bytes nobody asked for mean the framing is off: do not reuse.
                reusable: head.reusable && framing != Framing::Close && self.buf.is_empty(),
                ..head
            });
        }
    }

    /// Parses the head in the buffer: `None` until it is complete.
    fn parse_head(&mut self, lb: &LbMarker) -> Result<Option<(Head, Framing, usize)>, ErrorKind> {
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut resp = httparse::Response::new(&mut headers);
        let len = match resp.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(_) => return Err(ErrorKind::Protocol),
        };
        let status = resp.code.ok_or(ErrorKind::Protocol)?;
        let mut reusable = resp.version == Some(1);
        let mut framing = Framing::Close;
        let mut head = Head {
            status,
            version: None,
            served_by: None,
            by_lb: false,
            lb_target: None,
            reusable: false,
        };
        // Only error responses are searched for the load balancer's target headers: a success
        // costs no extra comparison per header.
        let error = status >= 400;
        let mut target_addr: Option<&[u8]> = None;
        for h in resp.headers.iter() {
            let name = h.name;
            if name.eq_ignore_ascii_case("content-length") {
                let n = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .ok_or(ErrorKind::Protocol)?;
                if framing != Framing::Chunked {
                    framing = Framing::Length(n);
                }
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                if h.value
                    .rsplit(|&b| b == b',')
                    .next()
                    .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
                {
                    framing = Framing::Chunked;
                }
            } else if name.eq_ignore_ascii_case("connection") {
                for token in h.value.split(|&b| b == b',') {
                    let token = token.trim_ascii();
                    if token.eq_ignore_ascii_case(b"close") {
                        reusable = false;
                    } else if token.eq_ignore_ascii_case(b"keep-alive") {
                        reusable = true;
                    }
                }
            } else if name.eq_ignore_ascii_case("x-app-version") {
                head.version = self.version.get(h.value);
            } else if name.eq_ignore_ascii_case("x-served-by") {
                head.served_by = self.served_by.get(h.value);
            } else if error && name.eq_ignore_ascii_case("x-localaws-target-id") {
                head.lb_target = self.lb_target.get(h.value);
            } else if error && name.eq_ignore_ascii_case("x-localaws-target") {
                target_addr = Some(h.value);
            }
            if name.eq_ignore_ascii_case(lb.header.as_str())
                && h.value
                    .trim_ascii()
                    .eq_ignore_ascii_case(lb.value.as_bytes())
            {
                head.by_lb = true;
            }
        }
        if head.lb_target.is_none()
            && let Some(addr) = target_addr
        {
            head.lb_target = self.lb_target.get(addr);
        }
        if (100..200).contains(&status) || status == 204 || status == 304 {
            framing = Framing::None;
        }
        head.reusable = reusable;
        Ok(Some((head, framing, len)))
    }

    /// Skips the body.
    async fn body<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        framing: Framing,
    ) -> Result<(), ErrorKind> {
        match framing {
            Framing::None => Ok(()),
            Framing::Length(n) => self.skip(io, n).await,
            Framing::Close => loop {
                self.buf.clear();
                match self.fill(io).await {
                    Ok(()) => {}
                    Err(ErrorKind::ConnectionClosed) => return Ok(()),
                    Err(e) => return Err(e),
                }
            },
            Framing::Chunked => loop {
                let size = loop {
                    if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                        let line = &self.buf[..pos];
                        let hex = line.split(|&b| b == b';').next().unwrap_or_default();
                        let size = std::str::from_utf8(hex)
                            .ok()
                            .and_then(|h| u64::from_str_radix(h.trim(), 16).ok())
                            .ok_or(ErrorKind::Protocol)?;
                        self.buf.advance(pos + 1);
                        break size;
                    }
                    if self.buf.len() > MAX_HEAD {
                        return Err(ErrorKind::Protocol);
                    }
                    self.fill(io).await?;
                };
                if size == 0 {
                    // Trailers, then an empty line.
                    loop {
                        if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                            let empty = self.buf[..pos].trim_ascii().is_empty();
                            self.buf.advance(pos + 1);
                            if empty {
                                return Ok(());
                            }
                        } else {
                            if self.buf.len() > MAX_HEAD {
                                return Err(ErrorKind::Protocol);
                            }
                            self.fill(io).await?;
                        }
                    }
                }
                // Data and its CRLF; a size near u64::MAX is a broken peer, not an overflow.
                let with_crlf = size.checked_add(2).ok_or(ErrorKind::Protocol)?;
                self.skip(io, with_crlf).await?;
            },
        }
    }

    /// Skips `n` bytes, from the buffer first.
    async fn skip<S: AsyncRead + Unpin>(
        &mut self,
        io: &mut S,
        mut n: u64,
    ) -> Result<(), ErrorKind> {
        loop {
            let have = (self.buf.len() as u64).min(n);
            self.buf.advance(have as usize);
            n -= have;
            if n == 0 {
                return Ok(());
            }
            self.fill(io).await?;
        }
    }
}

/// A keep-alive capable connection, plain or TLS.
#[derive(Debug)]
pub(crate) struct Wire {
    stream: Stream,
    reader: Reader,
}

impl Wire {
    pub(crate) fn new(stream: Stream) -> Wire {
        Wire {
            stream,
            reader: Reader::default(),
        }
    }

    /// Whether the peer closed this idle connection (or sent something unasked): then it must
    /// not carry a request. Never waits.
    pub(crate) fn closed(&mut self) -> bool {
        self.stream.closed()
    }

    /// Sends `request` and reads the response.
    pub(crate) async fn exchange(
        &mut self,
        request: &[u8],
        lb: &LbMarker,
    ) -> Result<Head, ErrorKind> {
        send(&mut self.stream, request).await?;
        self.reader.response(&mut self.stream, lb).await
    }
}

/// Writes the request; the flush costs nothing on plain TCP and pushes out what TLS still
/// holds when the socket would block.
async fn send<S: AsyncWrite + Unpin>(io: &mut S, request: &[u8]) -> Result<(), ErrorKind> {
    io.write_all(request).await.map_err(|e| io_kind(&e))?;
    io.flush().await.map_err(|e| io_kind(&e))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Serves `responses` one per request (each written in the given pieces) and reads them
    /// until one is not reusable or fails; the stream ends after the last.
    async fn exchange_all(responses: &[&[&[u8]]]) -> Vec<Result<Head, ErrorKind>> {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let (next_tx, mut next_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let responses: Vec<Vec<Vec<u8>>> = responses
            .iter()
            .map(|r| r.iter().map(|c| c.to_vec()).collect())
            .collect();
        let writer = tokio::spawn(async move {
            for pieces in responses {
                if next_rx.recv().await.is_none() {
                    return;
                }
                for p in pieces {
                    server.write_all(&p).await.unwrap();
                    server.flush().await.unwrap();
                    tokio::task::yield_now().await;
                }
            }
        });
        let mut reader = Reader::default();
        let lb = LbMarker::default();
        let mut out = Vec::new();
        loop {
            next_tx.send(()).ok();
            let r = reader.response(&mut client, &lb).await;
            let stop = r.is_err() || r.as_ref().is_ok_and(|h| !h.reusable);
            out.push(r);
            if stop {
                break;
            }
        }
        drop(next_tx);
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn content_length_responses_keep_the_connection() {
        let r = exchange_all(&[
            &[
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-App-Version: v1\r\nx-served-by: t-1\r\n\r\nhel",
                b"lo",
            ],
            &[b"HTTP/1.1 503 Service Unavailable\r\nserver: awselb/2.0\r\ncontent-length: 0\r\n\r\n"],
        ])
        .await;
        let first = r[0].as_ref().unwrap();
        assert_eq!(first.status, 200);
        assert_eq!(first.version.as_ref().unwrap(), "v1");
        assert_eq!(first.served_by.as_ref().unwrap(), "t-1");
        assert!(first.reusable && !first.by_lb);
        let second = r[1].as_ref().unwrap();
        assert_eq!(second.status, 503);
        assert!(second.by_lb);
        assert_eq!(
            r[2],
            Err(ErrorKind::ConnectionClosed),
            "then the peer hung up"
        );
    }

    #[tokio::test]
    async fn unasked_bytes_after_a_response_forbid_reuse() {
        let r = exchange_all(&[&[
            b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
        ]])
        .await;
        assert!(!r[0].as_ref().unwrap().reusable);
    }

    #[tokio::test]
    async fn chunked_bodies_split_anywhere_are_skipped() {
        let r = exchange_all(&[
            &[
                b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\nwi",
                b"ki\r\n5;ext=1\r\npedia\r\n0\r\ntrailer: x\r\n",
                b"\r\n",
            ],
            &[b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n"],
        ])
        .await;
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].as_ref().unwrap().status, 200);
        assert!(r[0].as_ref().unwrap().reusable);
        let last = r[1].as_ref().unwrap();
        assert_eq!(last.status, 204);
        assert!(!last.reusable, "connection: close");
    }

    #[tokio::test]
    async fn close_delimited_and_interim_responses() {
        let r = exchange_all(&[&[
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 500 Oops\r\n\r\nbody until close",
        ]])
        .await;
        let h = r[0].as_ref().unwrap();
        assert_eq!(h.status, 500);
        assert!(!h.reusable);
    }

    #[tokio::test]
    async fn truncated_and_garbage_responses_are_errors() {
        let r = exchange_all(&[&[b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort"]]).await;
        assert_eq!(r, [Err(ErrorKind::ConnectionClosed)]);
        let r = exchange_all(&[&[b"HTTP/1.1 200 OK\r\ncontent-le"]]).await;
        assert_eq!(r, [Err(ErrorKind::ConnectionClosed)]);
        let r = exchange_all(&[&[b"SSH-2.0-OpenSSH_9.0\r\n\r\n"]]).await;
        assert_eq!(r, [Err(ErrorKind::Protocol)]);
        let r = exchange_all(&[&[b"HTTP/1.1 200 OK\r\ncontent-length: x\r\n\r\n"]]).await;
        assert_eq!(r, [Err(ErrorKind::Protocol)]);
    }

    #[tokio::test]
    async fn load_balancer_errors_name_their_target_only_on_errors() {
        let r = exchange_all(&[
            &[b"HTTP/1.1 502 Bad Gateway\r\nserver: awselb/2.0\r\nx-localaws-target: 127.0.1.1:4000\r\nx-localaws-target-id: task-7\r\ncontent-length: 0\r\n\r\n"],
            &[b"HTTP/1.1 503 Service Unavailable\r\nserver: awselb/2.0\r\nx-localaws-target: 127.0.1.2:4001\r\ncontent-length: 0\r\n\r\n"],
            &[b"HTTP/1.1 200 OK\r\nx-localaws-target-id: task-7\r\ncontent-length: 0\r\n\r\n"],
            &[b"HTTP/1.1 504 Gateway Timeout\r\nserver: awselb/2.0\r\ncontent-length: 0\r\n\r\n"],
        ])
        .await;
        let target = |i: usize| r[i].as_ref().unwrap().lb_target.clone();
        assert_eq!(target(0).unwrap(), "task-7", "the id wins over the address");
        assert_eq!(
            target(1).unwrap(),
            "127.0.1.2:4001",
            "the address without an id"
        );
        assert_eq!(target(2), None, "not looked for on a success");
        assert_eq!(target(3), None, "an LB error without a target");
        assert!(r[0].as_ref().unwrap().by_lb);
    }

    #[tokio::test]
    async fn a_chunk_size_near_u64_max_is_a_protocol_error() {
        let r = exchange_all(&[&[
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nffffffffffffffff\r\n",
        ]])
        .await;
        assert_eq!(r, [Err(ErrorKind::Protocol)]);
    }

    #[test]
    fn attribution_values_are_reused() {
        let mut c = Cached::default();
        let a = c.get(b"v1").unwrap();
        let b = c.get(b"v1").unwrap();
        assert_eq!(a, b);
        assert_eq!(c.get(b"v2").unwrap(), "v2");
        assert!(c.get(b"bad\nvalue").is_none());
    }

    /// Reads responses from `bytes` until the stream ends or fails; the largest buffer seen.
    fn read_all(bytes: &[u8]) -> usize {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut io = bytes;
            let mut reader = Reader::default();
            let lb = LbMarker::default();
            let mut peak = 0;
            // Each response consumes at least one byte or ends the stream: bounded.
            for _ in 0..=bytes.len() {
                let r = reader.response(&mut io, &lb).await;
                peak = peak.max(reader.buf.capacity());
                if r.is_err() {
                    break;
                }
            }
            peak
        })
    }

    /// The largest read buffer a response may need: a head at the limit plus one read.
    const BUF_BOUND: usize = MAX_HEAD + 2 * READ_CHUNK;

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]

        /// Whatever a broken server sends: no panic, memory bounded.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4096)) {
            proptest::prop_assert!(read_all(&bytes) <= BUF_BOUND);
        }

        /// Bytes that look like HTTP get further into the parser: heads, framing, chunks.
        #[test]
        fn http_shaped_bytes_never_panic(
            status in 0u16..1000,
            headers in proptest::collection::vec(
                ("(content-length|transfer-encoding|connection|x-served-by|x-localaws-target-id|x-localaws-target|server)",
                 "[ -~]{0,24}"),
                0..8,
            ),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512),
            chunked in proptest::prelude::any::<bool>(),
        ) {
            let mut raw = format!("HTTP/1.1 {status} X\r\n").into_bytes();
            for (name, value) in &headers {
                raw.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
            }
            if chunked {
                raw.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
                raw.extend_from_slice(format!("{:x}\r\n", body.len()).as_bytes());
            } else {
                raw.extend_from_slice(b"\r\n");
            }
            raw.extend_from_slice(&body);
            proptest::prop_assert!(read_all(&raw) <= BUF_BOUND);
        }

        /// A head larger than the limit is refused without growing the buffer further.
        #[test]
        fn endless_heads_stay_bounded(line in "[a-z]{1,16}: [a-z]{1,64}\r\n", repeat in 1usize..3000) {
            let mut raw = b"HTTP/1.1 200 OK\r\n".to_vec();
            for _ in 0..repeat {
                raw.extend_from_slice(line.as_bytes());
            }
            proptest::prop_assert!(read_all(&raw) <= BUF_BOUND);
        }
    }
}
