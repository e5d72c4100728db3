//! WebSocket (RFC 6455), server side: the opening handshake's accept key, frames, and a
//! session that assembles messages, answers pings and closes politely.
//!
//! Only what the Kubernetes clients use is spoken: no extensions, binary and text messages,
//! fragmented or not, and the control frames.

use std::io;
use std::time::Duration;

use base64::Engine;
use bytes::{Buf, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::debug;

use crate::error::{Error, Result};

/// Continuation of a fragmented message.
pub const OP_CONTINUATION: u8 = 0x0;
/// A text message (UTF-8).
pub const OP_TEXT: u8 = 0x1;
/// A binary message.
pub const OP_BINARY: u8 = 0x2;
/// Closes the connection.
pub const OP_CLOSE: u8 = 0x8;
/// Asks for a pong.
pub const OP_PING: u8 = 0x9;
/// Answers a ping.
pub const OP_PONG: u8 = 0xa;

/// The close code of a normal end.
pub const CLOSE_NORMAL: u16 = 1000;
/// The largest message accepted.
const MAX_MESSAGE: usize = 16 << 20;

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.trim().as_bytes());
    sha.update(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64::engine::general_purpose::STANDARD.encode(sha.finalize())
}

/// One frame, unmasked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame {
    /// The last frame of its message.
    pub fin: bool,
    /// OP_* constant.
    pub opcode: u8,
    /// The payload.
    pub payload: Bytes,
}

/// Appends a frame; clients mask their frames, servers do not.
pub fn encode_frame(
    fin: bool,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
    out: &mut Vec<u8>,
) {
    out.push(if fin { 0x80 } else { 0 } | (opcode & 0x0f));
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n <= 0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        None => out.extend_from_slice(payload),
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
    }
}

/// Takes one frame off the front of `buf`; `None` while more bytes are needed. A server
/// requires masked frames (`masked`), a client unmasked ones.
pub fn decode_frame(buf: &mut BytesMut, masked: bool) -> Result<Option<WsFrame>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    if b0 & 0x70 != 0 {
        return Err(Error::ws(
            "frame",
            "reserved bits set (no extension was agreed)",
        ));
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    let is_masked = b1 & 0x80 != 0;
    if is_masked != masked {
        return Err(Error::ws(
            "frame",
            if masked {
                "a client frame is not masked"
            } else {
                "a server frame is masked"
            },
        ));
    }
    let (len, mut at) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (usize::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            let n = u64::from_be_bytes(b);
            if n > MAX_MESSAGE as u64 {
                return Err(Error::ws("frame", format!("{n} bytes exceed the limit")));
            }
            (n as usize, 10)
        }
        n => (usize::from(n), 2),
    };
    if len > MAX_MESSAGE {
        return Err(Error::ws("frame", format!("{len} bytes exceed the limit")));
    }
    if opcode >= 0x8 && (!fin || len > 125) {
        return Err(Error::ws(
            "control frame",
            "fragmented or longer than 125 bytes",
        ));
    }
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(Error::ws("frame", format!("unknown opcode {opcode:#x}")));
    }
    let key_len = if masked { 4 } else { 0 };
    if buf.len() < at + key_len + len {
        buf.reserve(at + key_len + len - buf.len());
        return Ok(None);
    }
    let mut key = [0u8; 4];
    if masked {
        key.copy_from_slice(&buf[at..at + 4]);
        at += 4;
    }
    buf.advance(at);
    let mut payload = buf.split_to(len);
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= key[i % 4];
        }
    }
    Ok(Some(WsFrame {
        fin,
        opcode,
        payload: payload.freeze(),
    }))
}

/// A whole message from the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Bytes.
    Binary(Bytes),
    /// UTF-8 text, as bytes.
    Text(Bytes),
}

enum Out {
    Data(u8, Bytes),
    Pong(Bytes),
    Close(u16),
}

/// Sends messages on a session.
#[derive(Clone)]
pub(crate) struct WsSender {
    tx: mpsc::Sender<Out>,
}

impl WsSender {
    /// Sends a binary message.
    pub async fn binary(&self, data: Bytes) -> io::Result<()> {
        self.send(Out::Data(OP_BINARY, data)).await
    }

    /// Sends a text message.
    pub async fn text(&self, data: Bytes) -> io::Result<()> {
        self.send(Out::Data(OP_TEXT, data)).await
    }

    async fn send(&self, out: Out) -> io::Result<()> {
        self.tx
            .send(out)
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "websocket closed"))
    }
}

/// A running server-side WebSocket connection.
pub(crate) struct WsSession {
    /// Messages from the client; ends when it closes or breaks the protocol.
    pub incoming: mpsc::Receiver<Message>,
    sender: WsSender,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl WsSession {
    /// Starts serving WebSocket frames on `io` (the connection after the upgrade).
    pub fn start<IO>(io: IO, peer: String) -> WsSession
    where
        IO: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (rd, wr) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel(256);
        let sender = WsSender { tx: out_tx };
        let (in_tx, incoming) = mpsc::channel(64);
        let writer = tokio::spawn(write_loop(wr, out_rx, peer.clone()));
        let reader = tokio::spawn(read_loop(rd, sender.clone(), in_tx, peer));
        WsSession {
            incoming,
            sender,
            reader,
            writer,
        }
    }

    /// A handle for sending.
    pub fn sender(&self) -> WsSender {
        self.sender.clone()
    }

    /// Splits off the incoming messages; the rest closes the session.
    pub fn split(self) -> (mpsc::Receiver<Message>, WsCloser) {
        let WsSession {
            incoming,
            sender,
            reader,
            writer,
        } = self;
        (
            incoming,
            WsCloser {
                sender,
                reader,
                writer,
            },
        )
    }
}

/// Ends a session.
pub(crate) struct WsCloser {
    sender: WsSender,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl WsCloser {
    /// Sends a normal close after everything queued, then waits up to `linger` for the
    /// client's close so it reads all that was sent.
    pub async fn close(self, linger: Duration) {
        let WsCloser {
            sender,
            reader,
            writer,
        } = self;
        let _ = sender.send(Out::Close(CLOSE_NORMAL)).await;
        drop(sender);
        let _ = writer.await;
        let abort = reader.abort_handle();
        if tokio::time::timeout(linger, reader).await.is_err() {
            abort.abort();
        }
    }
}

async fn read_loop<R>(mut rd: R, sender: WsSender, incoming: mpsc::Sender<Message>, peer: String)
where
    R: AsyncRead + Unpin,
{
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut partial: Option<(u8, BytesMut)> = None;
    'conn: loop {
        loop {
            let frame = match decode_frame(&mut buf, true) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    debug!(%peer, error = %e, "websocket: closing on a bad frame");
                    let _ = sender.send(Out::Close(1002)).await;
                    break 'conn;
                }
            };
            match frame.opcode {
                OP_PING => {
                    let _ = sender.send(Out::Pong(frame.payload)).await;
                }
                OP_PONG => {}
                OP_CLOSE => {
                    let _ = sender.send(Out::Close(CLOSE_NORMAL)).await;
                    break 'conn;
                }
                OP_CONTINUATION => {
                    let Some((_, data)) = partial.as_mut() else {
                        debug!(%peer, "websocket: continuation without a message");
                        let _ = sender.send(Out::Close(1002)).await;
                        break 'conn;
                    };
                    if data.len() + frame.payload.len() > MAX_MESSAGE {
                        let _ = sender.send(Out::Close(1009)).await;
                        break 'conn;
                    }
                    data.extend_from_slice(&frame.payload);
                    if frame.fin {
                        if let Some((op, data)) = partial.take() {
                            if deliver(&incoming, op, data.freeze()).await.is_err() {
                                break 'conn;
                            }
                        }
                    }
                }
                op => {
                    if frame.fin {
                        if deliver(&incoming, op, frame.payload).await.is_err() {
                            break 'conn;
                        }
                    } else {
                        partial = Some((op, BytesMut::from(&frame.payload[..])));
                    }
                }
            }
        }
        match rd.read_buf(&mut buf).await {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                debug!(%peer, error = %e, "websocket: read failed");
                break;
            }
        }
    }
}

async fn deliver(incoming: &mpsc::Sender<Message>, op: u8, data: Bytes) -> Result<(), ()> {
    let msg = if op == OP_TEXT {
        Message::Text(data)
    } else {
        Message::Binary(data)
    };
    incoming.send(msg).await.map_err(drop)
}

async fn write_loop<W>(mut wr: W, mut rx: mpsc::Receiver<Out>, peer: String)
where
    W: AsyncWrite + Unpin,
{
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        let mut closing = false;
        while let Some(msg) = next.take() {
            match msg {
                Out::Data(op, data) => encode_frame(true, op, &data, None, &mut buf),
                Out::Pong(data) => encode_frame(true, OP_PONG, &data, None, &mut buf),
                Out::Close(code) => {
                    encode_frame(true, OP_CLOSE, &code.to_be_bytes(), None, &mut buf);
                    closing = true;
                }
            }
            if closing || buf.len() >= 64 * 1024 {
                break;
            }
            next = rx.try_recv().ok();
        }
        if let Err(e) = wr.write_all(&buf).await {
            debug!(%peer, error = %e, "websocket: write failed");
            break;
        }
        buf.clear();
        if closing {
            break;
        }
    }
    let _ = wr.flush().await;
    let _ = wr.shutdown().await;
}

/// Carries a byte stream over binary messages (for SPDY tunnelled in a WebSocket): the
/// returned end reads what the client sends and writes what goes to it.
pub(crate) fn byte_stream(session: WsSession) -> tokio::io::DuplexStream {
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut incoming, closer) = session.split();
    let sender = closer.sender.clone();
    let (mut rd, mut wr) = tokio::io::split(ours);
    tokio::spawn(async move {
        let up = async {
            while let Some(msg) = incoming.recv().await {
                let data = match msg {
                    Message::Binary(d) | Message::Text(d) => d,
                };
                if wr.write_all(&data).await.is_err() {
                    break;
                }
            }
            let _ = wr.shutdown().await;
        };
        let down = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if sender
                            .binary(Bytes::copy_from_slice(&buf[..n]))
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        };
        tokio::select! {
            _ = down => {}
            _ = up => {}
        }
        drop(sender);
        closer.close(Duration::from_secs(5)).await;
    });
    theirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_key_matches_the_rfc_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn frames_round_trip_at_every_length_encoding() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 100_000] {
            let payload: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut wire = Vec::new();
            encode_frame(true, OP_BINARY, &payload, Some([1, 2, 3, 4]), &mut wire);
            let mut buf = BytesMut::from(&wire[..]);
            let f = decode_frame(&mut buf, true).unwrap().unwrap();
            assert_eq!((f.fin, f.opcode, f.payload.len()), (true, OP_BINARY, len));
            assert_eq!(&f.payload[..], &payload[..]);
            assert!(buf.is_empty());

            let mut wire = Vec::new();
            encode_frame(false, OP_TEXT, &payload, None, &mut wire);
            let mut buf = BytesMut::from(&wire[..]);
            let f = decode_frame(&mut buf, false).unwrap().unwrap();
            assert_eq!((f.fin, f.opcode), (false, OP_TEXT));
            assert_eq!(&f.payload[..], &payload[..]);
        }
    }

    #[test]
    fn masking_is_applied_on_the_wire() {
        let mut wire = Vec::new();
        encode_frame(
            true,
            OP_BINARY,
            b"\x01abc",
            Some([0xff, 0, 0xff, 0]),
            &mut wire,
        );
        assert_eq!(wire[..2], [0x82, 0x84]);
        assert_eq!(wire[6..], [0xfe, b'a', 0x9d, b'c']);
    }

    #[test]
    fn protocol_violations_are_errors() {
        let bad: Vec<Vec<u8>> = vec![
            vec![0xc2, 0x80, 0, 0, 0, 0],                // RSV1 set
            vec![0x82, 0x01, b'x'],                      // unmasked from a client
            vec![0x09, 0x80, 0, 0, 0, 0],                // fragmented ping
            vec![0x83, 0x80, 0, 0, 0, 0],                // reserved opcode
            vec![0x82, 0xff, 0, 0, 0, 0, 0x10, 0, 0, 0], // 256 MiB
        ];
        for case in bad {
            let mut buf = BytesMut::from(&case[..]);
            assert!(decode_frame(&mut buf, true).is_err(), "{case:?}");
        }
    }

    async fn client_send(io: &mut tokio::io::DuplexStream, fin: bool, op: u8, data: &[u8]) {
        let mut wire = Vec::new();
        encode_frame(fin, op, data, Some([9, 8, 7, 6]), &mut wire);
        io.write_all(&wire).await.unwrap();
    }

    async fn client_recv(io: &mut tokio::io::DuplexStream, buf: &mut BytesMut) -> Option<WsFrame> {
        loop {
            if let Some(f) = decode_frame(buf, false).unwrap() {
                return Some(f);
            }
            if io.read_buf(buf).await.unwrap() == 0 {
                return None;
            }
        }
    }

    #[tokio::test]
    async fn session_assembles_fragments_answers_pings_and_closes() {
        let (server_io, mut client) = tokio::io::duplex(1 << 16);
        let session = WsSession::start(server_io, "test".into());
        let sender = session.sender();
        let (mut incoming, closer) = session.split();
        let mut buf = BytesMut::new();

        client_send(&mut client, false, OP_BINARY, b"\x00hel").await;
        client_send(&mut client, true, OP_PING, b"hb").await;
        client_send(&mut client, true, OP_CONTINUATION, b"lo").await;
        assert_eq!(
            incoming.recv().await,
            Some(Message::Binary(Bytes::from_static(b"\x00hello")))
        );
        let pong = client_recv(&mut client, &mut buf).await.unwrap();
        assert_eq!((pong.opcode, &pong.payload[..]), (OP_PONG, &b"hb"[..]));

        sender.binary(Bytes::from_static(b"\x01out")).await.unwrap();
        let f = client_recv(&mut client, &mut buf).await.unwrap();
        assert_eq!((f.opcode, &f.payload[..]), (OP_BINARY, &b"\x01out"[..]));

        let closing = tokio::spawn(closer.close(Duration::from_secs(5)));
        let f = client_recv(&mut client, &mut buf).await.unwrap();
        assert_eq!((f.opcode, &f.payload[..]), (OP_CLOSE, &[0x03, 0xe8][..]));
        client_send(&mut client, true, OP_CLOSE, &[0x03, 0xe8]).await;
        closing.await.unwrap();
        assert_eq!(client_recv(&mut client, &mut buf).await, None);
        assert_eq!(incoming.recv().await, None);
    }
}
