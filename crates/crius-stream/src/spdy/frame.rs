//! SPDY/3.1 frames: their wire layout, and the zlib-compressed header blocks.
//!
//! Every frame starts with 8 bytes. A control frame has the high bit set, a 15-bit version
//! (3), a 16-bit type, 8 bits of flags and a 24-bit length; a data frame has a 31-bit stream
//! id, 8 bits of flags and a 24-bit length. Header blocks (in SYN_STREAM, SYN_REPLY and
//! HEADERS) are a 32-bit count of name/value pairs, each a 32-bit length and bytes, run
//! through one zlib stream per direction that lives as long as the connection, primed with
//! the SPDY dictionary and sync-flushed after each block.
//!
//! Flow control (WINDOW_UPDATE) is decoded but not acted on: the Kubernetes clients never
//! send window updates and ignore the ones they get, so honouring windows would stall them.

use bytes::{Buf, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::dictionary::dictionary;
use crate::error::{Error, Result};

/// The only SPDY version spoken.
pub const VERSION: u16 = 3;
/// The largest payload a frame can carry (24-bit length).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;
/// The largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 256 * 1024;
/// The most name/value pairs accepted in one header block.
const MAX_HEADERS: usize = 1024;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status: the peer broke the protocol on this stream.
pub const RST_PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM status: the stream is refused (not processed at all).
pub const RST_REFUSED_STREAM: u32 = 3;
/// RST_STREAM status: the stream is no longer needed.
pub const RST_CANCEL: u32 = 5;

/// Name/value pairs of a header block, names lowercase. A value holding several values
/// keeps them separated by NUL bytes, as on the wire.
pub type Headers = Vec<(String, String)>;

/// The first value of header `name` (names are lowercase on the wire).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

/// One SETTINGS entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// Persist flags.
    pub flags: u8,
    /// Which setting (24 bits).
    pub id: u32,
    /// Its value.
    pub value: u32,
}

/// One SPDY/3.1 frame, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Opens a stream.
    SynStream {
        /// Odd when the client opened it.
        stream_id: u32,
        /// The stream this one belongs to; 0 for none.
        associated_to: u32,
        /// 0 (highest) to 7.
        priority: u8,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The receiver may not send on it.
        unidirectional: bool,
        /// The stream's headers.
        headers: Headers,
    },
    /// Accepts a stream.
    SynReply {
        /// The stream accepted.
        stream_id: u32,
        /// The sender sends nothing more on it.
        fin: bool,
        /// Reply headers.
        headers: Headers,
    },
    /// Ends a stream abnormally.
    RstStream {
        /// The stream.
        stream_id: u32,
        /// Why (RST_* constants).
        status: u32,
    },
    /// Connection parameters.
    Settings {
        /// The settings sent.
        entries: Vec<Setting>,
    },
    /// A liveness probe; the receiver echoes the peer's pings.
    Ping {
        /// Odd from the client, even from the server.
        id: u32,
    },
    /// The sender opens no more streams.
    GoAway {
        /// The last stream the sender processed.
        last_good_stream_id: u32,
        /// 0 OK, 1 protocol error, 2 internal error.
        status: u32,
    },
    /// More headers on a stream.
    Headers {
        /// The stream.
        stream_id: u32,
        /// The sender sends nothing more on it.
        fin: bool,
        /// The headers.
        headers: Headers,
    },
    /// Grows a stream's send window.
    WindowUpdate {
        /// The stream.
        stream_id: u32,
        /// Bytes added to the window.
        delta: u32,
    },
    /// Payload bytes on a stream.
    Data {
        /// The stream.
        stream_id: u32,
        /// The last frame the sender sends on it.
        fin: bool,
        /// The bytes.
        data: Bytes,
    },
    /// A control frame of a type this codec does not know; ignored, as the spec asks.
    Unknown {
        /// Its type.
        frame_type: u16,
    },
}

/// Encodes and decodes the frames of one connection; holds the two zlib streams that live
/// as long as the connection, each made on first use (a connection's reader only ever
/// decompresses and its writer only compresses, and zlib state is a few hundred KiB).
pub struct Codec {
    compress: Option<Compress>,
    decompress: Option<Decompress>,
}

impl std::fmt::Debug for Codec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Codec").finish_non_exhaustive()
    }
}

impl Default for Codec {
    fn default() -> Self {
        Self::new()
    }
}

impl Codec {
    /// A codec for a new connection.
    pub fn new() -> Self {
        Codec {
            compress: None,
            decompress: None,
        }
    }

    /// Appends the wire form of `frame` to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<()> {
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                fin,
                unidirectional,
                headers,
            } => {
                let block = self.compress_headers(headers)?;
                let flags = flag(*fin, FLAG_FIN) | flag(*unidirectional, FLAG_UNIDIRECTIONAL);
                control_header(out, TYPE_SYN_STREAM, flags, 10 + block.len())?;
                put_u32(out, stream_id & 0x7fff_ffff);
                put_u32(out, associated_to & 0x7fff_ffff);
                out.push((priority & 0x7) << 5);
                out.push(0); // credential slot
                out.extend_from_slice(&block);
            }
            Frame::SynReply {
                stream_id,
                fin,
                headers,
            } => {
                let block = self.compress_headers(headers)?;
                control_header(out, TYPE_SYN_REPLY, flag(*fin, FLAG_FIN), 4 + block.len())?;
                put_u32(out, stream_id & 0x7fff_ffff);
                out.extend_from_slice(&block);
            }
            Frame::Headers {
                stream_id,
                fin,
                headers,
            } => {
                let block = self.compress_headers(headers)?;
                control_header(out, TYPE_HEADERS, flag(*fin, FLAG_FIN), 4 + block.len())?;
                put_u32(out, stream_id & 0x7fff_ffff);
                out.extend_from_slice(&block);
            }
            Frame::RstStream { stream_id, status } => {
                control_header(out, TYPE_RST_STREAM, 0, 8)?;
                put_u32(out, stream_id & 0x7fff_ffff);
                put_u32(out, *status);
            }
            Frame::Settings { entries } => {
                control_header(out, TYPE_SETTINGS, 0, 4 + 8 * entries.len())?;
                put_u32(out, entries.len() as u32);
                for s in entries {
                    put_u32(out, (u32::from(s.flags) << 24) | (s.id & 0x00ff_ffff));
                    put_u32(out, s.value);
                }
            }
            Frame::Ping { id } => {
                control_header(out, TYPE_PING, 0, 4)?;
                put_u32(out, *id);
            }
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                control_header(out, TYPE_GOAWAY, 0, 8)?;
                put_u32(out, last_good_stream_id & 0x7fff_ffff);
                put_u32(out, *status);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                control_header(out, TYPE_WINDOW_UPDATE, 0, 8)?;
                put_u32(out, stream_id & 0x7fff_ffff);
                put_u32(out, delta & 0x7fff_ffff);
            }
            Frame::Data {
                stream_id,
                fin,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(Error::spdy(
                        "data frame",
                        format!("{} bytes exceed the frame limit", data.len()),
                    ));
                }
                put_u32(out, stream_id & 0x7fff_ffff);
                put_u32(
                    out,
                    (u32::from(flag(*fin, FLAG_FIN)) << 24) | data.len() as u32,
                );
                out.extend_from_slice(data);
            }
            Frame::Unknown { frame_type } => {
                return Err(Error::spdy(
                    "frame",
                    format!("cannot encode unknown control frame type {frame_type}"),
                ))
            }
        }
        Ok(())
    }

    /// Takes one whole frame off the front of `buf`; `None` while more bytes are needed.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>> {
        if buf.len() < 8 {
            return Ok(None);
        }
        let first = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        let flags = buf[4];
        let length = (usize::from(buf[5]) << 16) | (usize::from(buf[6]) << 8) | usize::from(buf[7]);
        if buf.len() < 8 + length {
            buf.reserve(8 + length - buf.len());
            return Ok(None);
        }
        buf.advance(8);
        let payload = buf.split_to(length).freeze();
        if first & 0x8000_0000 == 0 {
            let stream_id = first & 0x7fff_ffff;
            if stream_id == 0 {
                return Err(Error::spdy("data frame", "stream id 0"));
            }
            return Ok(Some(Frame::Data {
                stream_id,
                fin: flags & FLAG_FIN != 0,
                data: payload,
            }));
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        let frame_type = (first & 0xffff) as u16;
        if version != VERSION {
            return Err(Error::spdy(
                "control frame",
                format!("version {version}; only {VERSION} is spoken"),
            ));
        }
        let fin = flags & FLAG_FIN != 0;
        let p = &payload[..];
        let frame = match frame_type {
            TYPE_SYN_STREAM => {
                need(p, 10, "syn_stream")?;
                Frame::SynStream {
                    stream_id: be32(p, 0) & 0x7fff_ffff,
                    associated_to: be32(p, 4) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    fin,
                    unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                    headers: self.decompress_headers(&p[10..])?,
                }
            }
            TYPE_SYN_REPLY => {
                need(p, 4, "syn_reply")?;
                Frame::SynReply {
                    stream_id: be32(p, 0) & 0x7fff_ffff,
                    fin,
                    headers: self.decompress_headers(&p[4..])?,
                }
            }
            TYPE_HEADERS => {
                need(p, 4, "headers")?;
                Frame::Headers {
                    stream_id: be32(p, 0) & 0x7fff_ffff,
                    fin,
                    headers: self.decompress_headers(&p[4..])?,
                }
            }
            TYPE_RST_STREAM => {
                need(p, 8, "rst_stream")?;
                Frame::RstStream {
                    stream_id: be32(p, 0) & 0x7fff_ffff,
                    status: be32(p, 4),
                }
            }
            TYPE_SETTINGS => {
                need(p, 4, "settings")?;
                let n = be32(p, 0) as usize;
                if p.len() < 4 + n.saturating_mul(8) {
                    return Err(Error::spdy(
                        "settings",
                        format!("{n} entries do not fit {} bytes", p.len()),
                    ));
                }
                let entries = (0..n)
                    .map(|i| {
                        let word = be32(p, 4 + 8 * i);
                        Setting {
                            flags: (word >> 24) as u8,
                            id: word & 0x00ff_ffff,
                            value: be32(p, 8 + 8 * i),
                        }
                    })
                    .collect();
                Frame::Settings { entries }
            }
            TYPE_PING => {
                need(p, 4, "ping")?;
                Frame::Ping { id: be32(p, 0) }
            }
            TYPE_GOAWAY => {
                need(p, 4, "goaway")?;
                Frame::GoAway {
                    last_good_stream_id: be32(p, 0) & 0x7fff_ffff,
                    status: if p.len() >= 8 { be32(p, 4) } else { 0 },
                }
            }
            TYPE_WINDOW_UPDATE => {
                need(p, 8, "window_update")?;
                Frame::WindowUpdate {
                    stream_id: be32(p, 0) & 0x7fff_ffff,
                    delta: be32(p, 4) & 0x7fff_ffff,
                }
            }
            other => Frame::Unknown { frame_type: other },
        };
        Ok(Some(frame))
    }

    fn compress_headers(&mut self, headers: &Headers) -> Result<Vec<u8>> {
        let mut raw = Vec::new();
        put_u32(&mut raw, headers.len() as u32);
        for (name, value) in headers {
            let name = name.to_ascii_lowercase();
            put_u32(&mut raw, name.len() as u32);
            raw.extend_from_slice(name.as_bytes());
            put_u32(&mut raw, value.len() as u32);
            raw.extend_from_slice(value.as_bytes());
        }
        let compress = match &mut self.compress {
            Some(c) => c,
            None => {
                let mut c = Compress::new(Compression::default(), true);
                c.set_dictionary(dictionary())
                    .map_err(|e| Error::spdy("header compression", e.to_string()))?;
                self.compress.insert(c)
            }
        };
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(1024);
            }
            let before = compress.total_in();
            compress
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| Error::spdy("header compression", e.to_string()))?;
            let used = (compress.total_in() - before) as usize;
            input = &input[used..];
            // Done once all input is in and zlib left room in the buffer (nothing pending).
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    fn decompress_headers(&mut self, block: &[u8]) -> Result<Headers> {
        let decompress = self.decompress.get_or_insert_with(|| Decompress::new(true));
        let mut out: Vec<u8> = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            if out.capacity() - out.len() < 256 {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(Error::spdy(
                        "header block",
                        format!("larger than {MAX_HEADER_BLOCK} bytes"),
                    ));
                }
                out.reserve(4096);
            }
            let (before_in, before_out) = (decompress.total_in(), decompress.total_out());
            let res = decompress.decompress_vec(input, &mut out, FlushDecompress::Sync);
            let used = (decompress.total_in() - before_in) as usize;
            let made = decompress.total_out() - before_out;
            input = &input[used..];
            match res {
                Ok(Status::StreamEnd) => break,
                Ok(_) => {
                    let room_left = out.len() < out.capacity();
                    if (input.is_empty() && room_left) || (used == 0 && made == 0 && room_left) {
                        break;
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    decompress
                        .set_dictionary(dictionary())
                        .map_err(|e| Error::spdy("header block", e.to_string()))?;
                }
                Err(e) => return Err(Error::spdy("header block", e.to_string())),
            }
        }
        if !input.is_empty() {
            return Err(Error::spdy(
                "header block",
                format!("{} compressed bytes left over", input.len()),
            ));
        }
        parse_header_block(&out)
    }
}

/// Parses a decompressed header block.
fn parse_header_block(raw: &[u8]) -> Result<Headers> {
    let mut r = raw;
    let count = take_u32(&mut r)? as usize;
    if count > MAX_HEADERS {
        return Err(Error::spdy(
            "header block",
            format!("{count} headers exceed the limit of {MAX_HEADERS}"),
        ));
    }
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        let name = take_str(&mut r)?;
        let value = take_str(&mut r)?;
        if name.is_empty() {
            return Err(Error::spdy("header block", "empty header name"));
        }
        headers.push((name.to_ascii_lowercase(), value));
    }
    Ok(headers)
}

fn take_u32(r: &mut &[u8]) -> Result<u32> {
    if r.len() < 4 {
        return Err(Error::spdy("header block", "truncated"));
    }
    let v = be32(r, 0);
    *r = &r[4..];
    Ok(v)
}

fn take_str(r: &mut &[u8]) -> Result<String> {
    let len = take_u32(r)? as usize;
    if r.len() < len {
        return Err(Error::spdy(
            "header block",
            format!("a {len}-byte string runs past the end"),
        ));
    }
    let s = String::from_utf8(r[..len].to_vec())
        .map_err(|_| Error::spdy("header block", "a name or value is not UTF-8"))?;
    *r = &r[len..];
    Ok(s)
}

fn need(p: &[u8], n: usize, what: &'static str) -> Result<()> {
    if p.len() < n {
        return Err(Error::spdy(
            what,
            format!("payload of {} bytes, at least {n} needed", p.len()),
        ));
    }
    Ok(())
}

fn be32(p: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]])
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn flag(on: bool, bit: u8) -> u8 {
    if on {
        bit
    } else {
        0
    }
}

fn control_header(out: &mut Vec<u8>, frame_type: u16, flags: u8, len: usize) -> Result<()> {
    if len > MAX_PAYLOAD {
        return Err(Error::spdy(
            "control frame",
            format!("{len} bytes exceed the frame limit"),
        ));
    }
    out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
    out.extend_from_slice(&frame_type.to_be_bytes());
    put_u32(out, (u32::from(flags) << 24) | len as u32);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn round_trip(frames: &[Frame]) -> Vec<Frame> {
        let mut tx = Codec::new();
        let mut rx = Codec::new();
        let mut wire = Vec::new();
        for f in frames {
            tx.encode(f, &mut wire).unwrap();
        }
        let mut buf = BytesMut::from(&wire[..]);
        let mut out = Vec::new();
        while let Some(f) = rx.decode(&mut buf).unwrap() {
            out.push(f);
        }
        assert!(buf.is_empty(), "bytes left over: {}", buf.len());
        out
    }

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        pairs
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_frame_type_survives_a_round_trip() {
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                fin: false,
                unidirectional: true,
                headers: hdrs(&[("streamtype", "error")]),
            },
            Frame::SynReply {
                stream_id: 1,
                fin: true,
                headers: vec![],
            },
            Frame::Headers {
                stream_id: 3,
                fin: false,
                headers: hdrs(&[("a", "b\0c")]),
            },
            Frame::RstStream {
                stream_id: 5,
                status: RST_CANCEL,
            },
            Frame::Settings {
                entries: vec![Setting {
                    flags: 1,
                    id: 7,
                    value: 65536,
                }],
            },
            Frame::Ping { id: 7 },
            Frame::GoAway {
                last_good_stream_id: 9,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 1,
                delta: 1000,
            },
            Frame::Data {
                stream_id: 1,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Data {
                stream_id: 3,
                fin: false,
                data: Bytes::new(),
            },
        ];
        assert_eq!(round_trip(&frames), frames);
    }

    #[test]
    fn header_blocks_share_one_zlib_stream_across_frames() {
        // The second block refers back to the first: it only decodes with the same context.
        let h = hdrs(&[
            ("streamtype", "stdout"),
            ("port", "8080"),
            ("requestid", "0"),
        ]);
        let frames: Vec<Frame> = (0..5)
            .map(|i| Frame::SynStream {
                stream_id: 2 * i + 1,
                associated_to: 0,
                priority: 0,
                fin: false,
                unidirectional: false,
                headers: h.clone(),
            })
            .collect();
        let mut tx = Codec::new();
        let mut sizes = Vec::new();
        let mut wire = Vec::new();
        for f in &frames {
            let before = wire.len();
            tx.encode(f, &mut wire).unwrap();
            sizes.push(wire.len() - before);
        }
        assert!(sizes[4] < sizes[0], "repeated headers compress: {sizes:?}");
        assert_eq!(round_trip(&frames), frames);

        // A fresh decoder that missed the first frame cannot read the second.
        let mut buf = BytesMut::from(&wire[sizes[0]..]);
        assert!(Codec::new().decode(&mut buf).is_err());
    }

    #[test]
    fn header_block_is_zlib_with_the_spdy_dictionary() {
        let mut wire = Vec::new();
        Codec::new()
            .encode(
                &Frame::SynReply {
                    stream_id: 1,
                    fin: false,
                    headers: hdrs(&[("x", "y")]),
                },
                &mut wire,
            )
            .unwrap();
        let block = &wire[12..];
        // FDICT set, DICTID = Adler-32 of the dictionary.
        assert_eq!(block[1] & 0x20, 0x20);
        assert_eq!(&block[2..6], &0xe3c6_a7c2u32.to_be_bytes());
        // A plain zlib reader without the dictionary refuses it.
        let mut plain = flate2::read::ZlibDecoder::new(block);
        let mut sink = Vec::new();
        assert!(plain.read_to_end(&mut sink).is_err());
    }

    #[test]
    fn partial_input_waits_for_the_rest() {
        let mut wire = Vec::new();
        Codec::new()
            .encode(
                &Frame::Data {
                    stream_id: 1,
                    fin: false,
                    data: Bytes::from_static(b"abcdef"),
                },
                &mut wire,
            )
            .unwrap();
        let mut rx = Codec::new();
        let mut buf = BytesMut::new();
        for b in &wire[..wire.len() - 1] {
            buf.extend_from_slice(&[*b]);
            assert_eq!(rx.decode(&mut buf).unwrap(), None);
        }
        buf.extend_from_slice(&wire[wire.len() - 1..]);
        assert!(matches!(
            rx.decode(&mut buf).unwrap(),
            Some(Frame::Data { stream_id: 1, .. })
        ));
    }

    #[test]
    fn bad_frames_are_errors_not_panics() {
        let cases: Vec<Vec<u8>> = vec![
            // version 2 control frame
            vec![0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1],
            // data frame on stream 0
            vec![0, 0, 0, 0, 0, 0, 0, 1, 9],
            // syn_stream too short
            vec![0x80, 3, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1],
            // syn_stream with garbage header block
            vec![
                0x80, 3, 0, 1, 0, 0, 0, 14, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4,
            ],
            // settings claiming more entries than present
            vec![0x80, 3, 0, 4, 0, 0, 0, 4, 0, 0, 1, 0],
        ];
        for case in cases {
            let mut buf = BytesMut::from(&case[..]);
            assert!(Codec::new().decode(&mut buf).is_err(), "{case:?}");
        }
    }

    #[test]
    fn unknown_control_frames_are_skipped() {
        let mut buf = BytesMut::from(&[0x80, 3, 0, 0x0a, 0, 0, 0, 2, 1, 2][..]);
        assert_eq!(
            Codec::new().decode(&mut buf).unwrap(),
            Some(Frame::Unknown { frame_type: 10 })
        );
        assert!(buf.is_empty());
    }

    #[test]
    fn header_lookup_takes_the_first_of_several_values() {
        let h = hdrs(&[("StreamType", "data"), ("port", "80\08080")]);
        assert_eq!(header(&h, "streamtype"), Some("data"));
        assert_eq!(header(&h, "port"), Some("80"));
        assert_eq!(header(&h, "requestid"), None);
    }
}
