//! The few Kafka protocol requests librdkafka has no API for (DescribeProducers,
//! ListTransactions, FindCoordinator, DescribeTransactions, WriteTxnMarkers), spoken over a
//! plain TCP connection. Every one of them is a flexible version: compact strings and arrays,
//! tagged fields, request header v2 and response header v1.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use super::JanitorError;

/// API keys of the requests sent here.
pub mod api {
    /// FindCoordinator.
    pub const FIND_COORDINATOR: i16 = 10;
    /// WriteTxnMarkers.
    pub const WRITE_TXN_MARKERS: i16 = 27;
    /// DescribeProducers.
    pub const DESCRIBE_PRODUCERS: i16 = 61;
    /// DescribeTransactions.
    pub const DESCRIBE_TRANSACTIONS: i16 = 65;
    /// ListTransactions.
    pub const LIST_TRANSACTIONS: i16 = 66;
}

/// Longest a connect, a write or a read may take: these are repair calls, never on a hot path.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response accepted; the answers asked for here are a few kilobytes.
const MAX_RESPONSE: usize = 64 << 20;
const CLIENT_ID: &str = "streamcart-janitor";

/// One connection to one broker.
pub struct Conn {
    stream: TcpStream,
    correlation: i32,
}

impl Conn {
    /// Connects to `host:port` within the I/O bound.
    pub fn open(host: &str, port: u16) -> Result<Self, JanitorError> {
        let addr = (host, port)
            .to_socket_addrs()
            .map_err(|e| JanitorError::Io(format!("{host}:{port}: {e}")))?
            .next()
            .ok_or_else(|| JanitorError::Io(format!("{host}:{port}: no address")))?;
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
            .map_err(|e| JanitorError::Io(format!("{host}:{port}: {e}")))?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|_| stream.set_write_timeout(Some(IO_TIMEOUT)))
            .and_then(|_| stream.set_nodelay(true))
            .map_err(|e| JanitorError::Io(e.to_string()))?;
        Ok(Self {
            stream,
            correlation: 0,
        })
    }

    /// Sends one request and returns its response body (after the response header).
    pub fn call(
        &mut self,
        api_key: i16,
        version: i16,
        body: &[u8],
    ) -> Result<Vec<u8>, JanitorError> {
        self.correlation += 1;
        let mut header = Encoder::default();
        header.i16(api_key);
        header.i16(version);
        header.i32(self.correlation);
        // The client id keeps its classic (non-compact) encoding even in header v2.
        header.i16(CLIENT_ID.len() as i16);
        header.raw(CLIENT_ID.as_bytes());
        header.tags();
        let len = (header.buf.len() + body.len()) as i32;
        let mut frame = Vec::with_capacity(4 + len as usize);
        frame.extend_from_slice(&len.to_be_bytes());
        frame.extend_from_slice(&header.buf);
        frame.extend_from_slice(body);
        let io = |e: std::io::Error| JanitorError::Io(e.to_string());
        self.stream.write_all(&frame).map_err(io)?;
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(io)?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > MAX_RESPONSE {
            return Err(JanitorError::Protocol(format!("response size {size}")));
        }
        let mut response = vec![0u8; size as usize];
        self.stream.read_exact(&mut response).map_err(io)?;
        let mut d = Decoder::new(&response);
        let correlation = d.i32()?;
        if correlation != self.correlation {
            return Err(JanitorError::Protocol(format!(
                "correlation id {correlation}, expected {}",
                self.correlation
            )));
        }
        d.skip_tags()?;
        Ok(response[d.pos..].to_vec())
    }
}

/// Builds a request body in the flexible encoding.
#[derive(Default)]
pub struct Encoder {
    /// The bytes written so far.
    pub buf: Vec<u8>,
}

impl Encoder {
    /// A signed byte.
    pub fn i8(&mut self, v: i8) {
        self.buf.push(v as u8);
    }
    /// A boolean (one byte).
    pub fn bool(&mut self, v: bool) {
        self.buf.push(u8::from(v));
    }
    /// A big-endian int16.
    pub fn i16(&mut self, v: i16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// A big-endian int32.
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// A big-endian int64.
    pub fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    /// An unsigned varint.
    pub fn uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }
    /// Bytes as they are.
    pub fn raw(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    /// A compact (length + 1) string.
    pub fn string(&mut self, s: &str) {
        self.uvarint(s.len() as u64 + 1);
        self.raw(s.as_bytes());
    }
    /// A null compact string.
    #[cfg(test)]
    pub fn null_string(&mut self) {
        self.uvarint(0);
    }
    /// The length prefix of a compact array of `n` items.
    pub fn array(&mut self, n: usize) {
        self.uvarint(n as u64 + 1);
    }
    /// An empty tagged-field section.
    pub fn tags(&mut self) {
        self.uvarint(0);
    }
}

/// Reads a response body in the flexible encoding.
pub struct Decoder<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    /// A decoder at the start of `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf, pos: 0 }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], JanitorError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|e| *e <= self.buf.len())
            .ok_or_else(|| JanitorError::Protocol(format!("truncated at byte {}", self.pos)))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }
    /// A big-endian int16.
    pub fn i16(&mut self) -> Result<i16, JanitorError> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }
    /// A big-endian int32.
    pub fn i32(&mut self) -> Result<i32, JanitorError> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    /// A big-endian int64.
    pub fn i64(&mut self) -> Result<i64, JanitorError> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// An unsigned varint.
    pub fn uvarint(&mut self) -> Result<u64, JanitorError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1)?[0];
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(JanitorError::Protocol("varint too long".into()))
    }
    /// A nullable compact string.
    pub fn nullable_string(&mut self) -> Result<Option<String>, JanitorError> {
        let n = self.uvarint()?;
        if n == 0 {
            return Ok(None);
        }
        let bytes = self.take(n as usize - 1)?;
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| JanitorError::Protocol("string is not UTF-8".into()))
    }
    /// A compact string (null read as empty).
    pub fn string(&mut self) -> Result<String, JanitorError> {
        Ok(self.nullable_string()?.unwrap_or_default())
    }
    /// The number of items of a compact array (null read as empty).
    pub fn array(&mut self) -> Result<usize, JanitorError> {
        let n = self.uvarint()? as usize;
        let items = n.saturating_sub(1);
        // Every item takes at least one byte: a larger count is corrupt, not a huge allocation.
        if items > self.buf.len() - self.pos {
            return Err(JanitorError::Protocol(format!("array of {items} items")));
        }
        Ok(items)
    }
    /// Skips a tagged-field section.
    pub fn skip_tags(&mut self) -> Result<(), JanitorError> {
        let n = self.uvarint()?;
        for _ in 0..n {
            let _tag = self.uvarint()?;
            let size = self.uvarint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [0u64, 1, 127, 128, 300, 16_383, 16_384, u32::MAX as u64] {
            let mut e = Encoder::default();
            e.uvarint(v);
            assert_eq!(Decoder::new(&e.buf).uvarint().expect("decodes"), v);
        }
        let mut e = Encoder::default();
        e.uvarint(300);
        assert_eq!(e.buf, vec![0xac, 0x02]);
    }

    #[test]
    fn strings_arrays_and_tags_round_trip() {
        let mut e = Encoder::default();
        e.string("orders.order.events");
        e.null_string();
        e.array(2);
        e.i32(7);
        e.i64(-1);
        // One tagged field of three bytes, which a reader skips.
        e.uvarint(1);
        e.uvarint(0);
        e.uvarint(3);
        e.raw(&[1, 2, 3]);
        e.i16(-5);
        let mut d = Decoder::new(&e.buf);
        assert_eq!(d.string().expect("decodes"), "orders.order.events");
        assert_eq!(d.nullable_string().expect("decodes"), None);
        assert_eq!(d.array().expect("decodes"), 2);
        assert_eq!(d.i32().expect("decodes"), 7);
        assert_eq!(d.i64().expect("decodes"), -1);
        d.skip_tags().expect("decodes");
        assert_eq!(d.i16().expect("decodes"), -5);
    }

    #[test]
    fn truncated_and_corrupt_input_is_an_error_not_a_panic() {
        assert!(Decoder::new(&[0, 0]).i32().is_err());
        assert!(Decoder::new(&[0xff, 0xff]).uvarint().is_err());
        // A string claiming 100 bytes with 2 present.
        assert!(Decoder::new(&[101, b'a', b'b']).string().is_err());
        // An array claiming a million items in a 3-byte buffer.
        let mut e = Encoder::default();
        e.array(1_000_000);
        assert!(Decoder::new(&e.buf).array().is_err());
    }
}
