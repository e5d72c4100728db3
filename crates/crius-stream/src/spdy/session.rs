//! The server side of a SPDY/3.1 connection: the client opens streams, the server accepts
//! them, and data flows both ways on each until it is finished or reset.
//!
//! One task reads and decodes frames and hands each stream's data to its reader; another
//! encodes and writes the frames queued by every stream, so frames leave in the order they
//! were queued (a SYN_REPLY always precedes the data on its stream). Pings from the client
//! are echoed. Data for a stream whose reader is slow holds up the connection's reader, as
//! in the Go implementation the clients use; the per-stream queue keeps that rare.

use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use super::frame::{header, Codec, Frame, Headers, RST_CANCEL, RST_PROTOCOL_ERROR};

/// Data frames are cut to this size.
const CHUNK: usize = 32 * 1024;
/// Frames queued per stream before the connection's reader waits.
const STREAM_QUEUE: usize = 64;
/// Frames queued for writing before writers wait.
const WRITE_QUEUE: usize = 256;

enum Out {
    Frame(Frame),
    /// Send GOAWAY and stop writing.
    Close {
        last_stream: u32,
    },
}

/// Queues frames for the connection's writer.
#[derive(Clone)]
pub(crate) struct Outbox {
    tx: mpsc::Sender<Out>,
}

impl Outbox {
    async fn frame(&self, frame: Frame) -> io::Result<()> {
        self.tx
            .send(Out::Frame(frame))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "spdy connection closed"))
    }
}

/// Shared between a stream's reader side and its writer side.
struct StreamState {
    reset: AtomicBool,
    finished: AtomicBool,
}

/// A stream the client opened.
pub(crate) struct SpdyStream {
    /// The stream id (odd).
    pub id: u32,
    /// The headers of its SYN_STREAM.
    pub headers: Headers,
    /// Data from the client; ends at its FIN, a reset, or the end of the connection.
    pub rx: mpsc::Receiver<Bytes>,
    /// The sending side.
    pub tx: StreamWriter,
}

impl SpdyStream {
    /// The first value of a header of the SYN_STREAM.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// Sends on one stream.
#[derive(Clone)]
pub(crate) struct StreamWriter {
    id: u32,
    out: Outbox,
    state: Arc<StreamState>,
}

impl StreamWriter {
    /// Accepts the stream (SYN_REPLY); the client sends and reads nothing before it.
    pub async fn reply(&self) -> io::Result<()> {
        self.out
            .frame(Frame::SynReply {
                stream_id: self.id,
                fin: false,
                headers: Vec::new(),
            })
            .await
    }

    /// Sends bytes, cut into frames.
    pub async fn write(&self, data: Bytes) -> io::Result<()> {
        let mut data = data;
        while !data.is_empty() {
            if self.state.reset.load(Ordering::Acquire) {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionReset,
                    format!("spdy stream {} was reset", self.id),
                ));
            }
            let chunk = data.split_to(data.len().min(CHUNK));
            self.out
                .frame(Frame::Data {
                    stream_id: self.id,
                    fin: false,
                    data: chunk,
                })
                .await?;
        }
        Ok(())
    }

    /// Says that nothing more will be sent (FIN); later calls do nothing.
    pub async fn finish(&self) {
        if self.state.finished.swap(true, Ordering::AcqRel) || self.is_reset() {
            return;
        }
        let _ = self
            .out
            .frame(Frame::Data {
                stream_id: self.id,
                fin: true,
                data: Bytes::new(),
            })
            .await;
    }

    /// Ends the stream abnormally (RST_STREAM).
    pub async fn reset(&self) {
        if self.state.reset.swap(true, Ordering::AcqRel) {
            return;
        }
        let _ = self
            .out
            .frame(Frame::RstStream {
                stream_id: self.id,
                status: RST_CANCEL,
            })
            .await;
    }

    /// Whether either side reset the stream.
    pub fn is_reset(&self) -> bool {
        self.state.reset.load(Ordering::Acquire)
    }
}

struct Entry {
    tx: Option<mpsc::Sender<Bytes>>,
    state: Arc<StreamState>,
}

/// A running server-side SPDY connection.
pub(crate) struct Session {
    /// Streams as the client opens them; ends with the connection.
    pub incoming: mpsc::Receiver<SpdyStream>,
    out: Outbox,
    reader: JoinHandle<u32>,
    writer: JoinHandle<()>,
}

impl Session {
    /// Starts serving SPDY on `io` (the connection after the HTTP upgrade).
    pub fn start<IO>(io: IO, peer: String) -> Session
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(WRITE_QUEUE);
        let out = Outbox { tx: out_tx };
        let (inc_tx, incoming) = mpsc::channel(16);
        let writer = tokio::spawn(write_loop(wr, out_rx, peer.clone()));
        let reader = tokio::spawn(read_loop(rd, out.clone(), inc_tx, peer));
        Session {
            incoming,
            out,
            reader,
            writer,
        }
    }

    /// Splits off the incoming streams; the rest closes the session.
    pub fn split(self) -> (mpsc::Receiver<SpdyStream>, SessionCloser) {
        let Session {
            incoming,
            out,
            reader,
            writer,
        } = self;
        (
            incoming,
            SessionCloser {
                out,
                reader,
                writer,
            },
        )
    }

    /// Ends the connection; see [`SessionCloser::close`].
    #[cfg(test)]
    pub async fn close(self, linger: Duration) {
        self.split().1.close(linger).await
    }
}

/// Ends a session.
pub(crate) struct SessionCloser {
    out: Outbox,
    reader: JoinHandle<u32>,
    writer: JoinHandle<()>,
}

impl SessionCloser {
    /// Ends the connection politely: GOAWAY after everything queued, then waits up to
    /// `linger` for the client to hang up, so it reads every byte sent before the close.
    pub async fn close(self, linger: Duration) {
        let SessionCloser {
            out,
            reader,
            writer,
        } = self;
        let _ = out.tx.send(Out::Close { last_stream: 0 }).await;
        drop(out);
        let _ = writer.await;
        let abort = reader.abort_handle();
        if tokio::time::timeout(linger, reader).await.is_err() {
            abort.abort();
        }
    }
}

async fn read_loop<R>(
    mut rd: R,
    out: Outbox,
    incoming: mpsc::Sender<SpdyStream>,
    peer: String,
) -> u32
where
    R: AsyncRead + Unpin,
{
    let mut codec = Codec::new();
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut streams: HashMap<u32, Entry> = HashMap::new();
    let mut last_id = 0u32;
    'conn: loop {
        loop {
            let frame = match codec.decode(&mut buf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    debug!(%peer, error = %e, "spdy: closing connection on a bad frame");
                    let _ = out
                        .tx
                        .send(Out::Close {
                            last_stream: last_id,
                        })
                        .await;
                    break 'conn;
                }
            };
            match frame {
                Frame::SynStream {
                    stream_id,
                    fin,
                    headers,
                    ..
                } => {
                    if stream_id % 2 == 0 || stream_id <= last_id {
                        let _ = out
                            .frame(Frame::RstStream {
                                stream_id,
                                status: RST_PROTOCOL_ERROR,
                            })
                            .await;
                        continue;
                    }
                    last_id = stream_id;
                    let state = Arc::new(StreamState {
                        reset: AtomicBool::new(false),
                        finished: AtomicBool::new(false),
                    });
                    let (tx, rx) = mpsc::channel(STREAM_QUEUE);
                    let stream = SpdyStream {
                        id: stream_id,
                        headers,
                        rx,
                        tx: StreamWriter {
                            id: stream_id,
                            out: out.clone(),
                            state: state.clone(),
                        },
                    };
                    streams.insert(
                        stream_id,
                        Entry {
                            tx: (!fin).then_some(tx),
                            state,
                        },
                    );
                    if incoming.send(stream).await.is_err() {
                        // Nobody takes streams any more: the session is ending.
                        let _ = out
                            .frame(Frame::RstStream {
                                stream_id,
                                status: super::frame::RST_REFUSED_STREAM,
                            })
                            .await;
                    }
                }
                Frame::Data {
                    stream_id,
                    fin,
                    data,
                } => {
                    let Some(entry) = streams.get_mut(&stream_id) else {
                        continue;
                    };
                    if let Some(tx) = &entry.tx {
                        if !data.is_empty() && tx.send(data).await.is_err() {
                            // The reader went away; later data is dropped.
                            entry.tx = None;
                        }
                    }
                    if fin {
                        entry.tx = None;
                    }
                }
                Frame::RstStream { stream_id, .. } => {
                    if let Some(entry) = streams.remove(&stream_id) {
                        entry.state.reset.store(true, Ordering::Release);
                    }
                }
                Frame::Ping { id } => {
                    // Odd ids are the client's own pings: echo them.
                    if id % 2 == 1 {
                        let _ = out.frame(Frame::Ping { id }).await;
                    }
                }
                Frame::GoAway { .. } => break 'conn,
                Frame::Headers {
                    stream_id,
                    fin: true,
                    ..
                } => {
                    if let Some(entry) = streams.get_mut(&stream_id) {
                        entry.tx = None;
                    }
                }
                Frame::SynReply { .. }
                | Frame::Headers { .. }
                | Frame::Settings { .. }
                | Frame::WindowUpdate { .. }
                | Frame::Unknown { .. } => {}
            }
            // Forget streams that are done both ways.
            streams.retain(|_, e| {
                e.tx.is_some()
                    || !(e.state.finished.load(Ordering::Acquire)
                        || e.state.reset.load(Ordering::Acquire))
            });
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                debug!(%peer, error = %e, "spdy: read failed");
                break;
            }
        }
    }
    for entry in streams.values() {
        if entry.tx.is_some() {
            // The connection ended under the stream: writers must stop too.
            entry.state.reset.store(true, Ordering::Release);
        }
    }
    last_id
}

async fn write_loop<W>(mut wr: W, mut rx: mpsc::Receiver<Out>, peer: String)
where
    W: AsyncWrite + Unpin,
{
    let mut codec = Codec::new();
    let mut buf = Vec::with_capacity(64 * 1024);
    'outer: while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut closing = false;
        // Batch what is already queued into one write.
        while let Some(msg) = next.take() {
            let frame = match msg {
                Out::Frame(f) => f,
                Out::Close { last_stream } => {
                    closing = true;
                    Frame::GoAway {
                        last_good_stream_id: last_stream,
                        status: 0,
                    }
                }
            };
            if let Err(e) = codec.encode(&frame, &mut buf) {
                debug!(%peer, error = %e, "spdy: cannot encode a frame");
            }
            if closing || buf.len() >= 64 * 1024 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = wr.write_all(&buf).await {
            debug!(%peer, error = %e, "spdy: write failed");
            break 'outer;
        }
        buf.clear();
        if closing {
            break;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client half of a connection, speaking frames through its own codec.
    struct Client {
        io: tokio::io::DuplexStream,
        codec: Codec,
        buf: BytesMut,
    }

    impl Client {
        async fn send(&mut self, frame: Frame) {
            let mut wire = Vec::new();
            self.codec.encode(&frame, &mut wire).unwrap();
            self.io.write_all(&wire).await.unwrap();
        }

        async fn recv(&mut self) -> Option<Frame> {
            loop {
                if let Some(f) = self.codec.decode(&mut self.buf).unwrap() {
                    return Some(f);
                }
                if self.io.read_buf(&mut self.buf).await.unwrap() == 0 {
                    return None;
                }
            }
        }
    }

    fn syn(id: u32, kind: &str, fin: bool) -> Frame {
        Frame::SynStream {
            stream_id: id,
            associated_to: 0,
            priority: 0,
            fin,
            unidirectional: false,
            headers: vec![("streamtype".into(), kind.into())],
        }
    }

    fn pair() -> (Session, Client) {
        let (a, b) = tokio::io::duplex(1 << 20);
        let session = Session::start(a, "test".into());
        let client = Client {
            io: b,
            codec: Codec::new(),
            buf: BytesMut::new(),
        };
        (session, client)
    }

    #[tokio::test]
    async fn streams_are_accepted_and_carry_data_both_ways() {
        let (mut session, mut client) = pair();
        client.send(syn(1, "stdin", false)).await;
        client
            .send(Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"ping"),
            })
            .await;
        let mut stream = session.incoming.recv().await.unwrap();
        assert_eq!(stream.id, 1);
        assert_eq!(stream.header("streamtype"), Some("stdin"));
        stream.tx.reply().await.unwrap();
        assert_eq!(stream.rx.recv().await.unwrap(), Bytes::from_static(b"ping"));
        assert_eq!(stream.rx.recv().await, None, "FIN ends the data");

        stream.tx.write(Bytes::from_static(b"pong")).await.unwrap();
        stream.tx.finish().await;
        assert!(matches!(
            client.recv().await,
            Some(Frame::SynReply { stream_id: 1, .. })
        ));
        assert_eq!(
            client.recv().await,
            Some(Frame::Data {
                stream_id: 1,
                fin: false,
                data: Bytes::from_static(b"pong")
            })
        );
        assert_eq!(
            client.recv().await,
            Some(Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::new()
            })
        );
        session.close(Duration::from_millis(10)).await;
        assert!(matches!(client.recv().await, Some(Frame::GoAway { .. })));
        assert_eq!(client.recv().await, None);
    }

    #[tokio::test]
    async fn pings_are_echoed_and_resets_stop_writers() {
        let (mut session, mut client) = pair();
        client.send(Frame::Ping { id: 1 }).await;
        assert_eq!(client.recv().await, Some(Frame::Ping { id: 1 }));

        client.send(syn(3, "data", false)).await;
        let stream = session.incoming.recv().await.unwrap();
        client
            .send(Frame::RstStream {
                stream_id: 3,
                status: RST_CANCEL,
            })
            .await;
        // The reset is seen once the reader got to it.
        for _ in 0..100 {
            if stream.tx.is_reset() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(stream.tx.is_reset());
        assert!(stream.tx.write(Bytes::from_static(b"x")).await.is_err());
        drop(session);
    }

    #[tokio::test]
    async fn even_or_reused_stream_ids_are_refused() {
        let (mut session, mut client) = pair();
        client.send(syn(2, "data", false)).await;
        assert_eq!(
            client.recv().await,
            Some(Frame::RstStream {
                stream_id: 2,
                status: RST_PROTOCOL_ERROR
            })
        );
        client.send(syn(5, "data", true)).await;
        client.send(syn(3, "data", false)).await;
        let s = session.incoming.recv().await.unwrap();
        assert_eq!(s.id, 5);
        assert_eq!(
            client.recv().await,
            Some(Frame::RstStream {
                stream_id: 3,
                status: RST_PROTOCOL_ERROR
            })
        );
    }

    #[tokio::test]
    async fn large_writes_are_cut_into_frames() {
        let (mut session, mut client) = pair();
        client.send(syn(1, "stdout", false)).await;
        let stream = session.incoming.recv().await.unwrap();
        let big = Bytes::from(vec![7u8; CHUNK * 2 + 10]);
        stream.tx.write(big.clone()).await.unwrap();
        let mut got = Vec::new();
        while got.len() < big.len() {
            match client.recv().await {
                Some(Frame::Data { data, .. }) => {
                    assert!(data.len() <= CHUNK);
                    got.extend_from_slice(&data);
                }
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(got, big);
    }
}
