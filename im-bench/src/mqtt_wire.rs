//! A minimal MQTT 3.1.1 client for the 1:1 scenarios: CONNECT, SUBSCRIBE,
//! PUBLISH at QoS 1 and PUBACK, written straight to the socket (many
//! packets per write) and parsed from one buffer. rumqttc, which the other
//! scenarios use, spent nearly a core of the generator's at 85k messages a
//! second, so against it Mosquitto's figures measured the generator.

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// Packet types (the high nibble of the first byte).
pub(crate) const CONNACK: u8 = 2;
pub(crate) const PUBLISH: u8 = 3;
pub(crate) const PUBACK: u8 = 4;
pub(crate) const SUBACK: u8 = 9;

fn put_len(out: &mut BytesMut, mut n: usize) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if n == 0 {
            return;
        }
    }
}

fn put_str(out: &mut BytesMut, s: &[u8]) {
    out.put_u16(s.len() as u16);
    out.put_slice(s);
}

/// Appends a QoS 1 PUBLISH.
pub(crate) fn put_publish(out: &mut BytesMut, topic: &[u8], pid: u16, payload: &[u8]) {
    out.put_u8(0x32);
    put_len(out, 2 + topic.len() + 2 + payload.len());
    put_str(out, topic);
    out.put_u16(pid);
    out.put_slice(payload);
}

/// Appends a PUBACK.
pub(crate) fn put_puback(out: &mut BytesMut, pid: u16) {
    out.put_slice(&[0x40, 0x02]);
    out.put_u16(pid);
}

/// One parsed packet: its type, flags and body.
pub(crate) struct Packet {
    pub(crate) kind: u8,
    pub(crate) flags: u8,
    pub(crate) body: BytesMut,
}

impl Packet {
    /// For a PUBLISH: its packet id (0 at QoS 0) and payload.
    pub(crate) fn publish(&self) -> Option<(u16, &[u8])> {
        if self.kind != PUBLISH {
            return None;
        }
        let b = &self.body[..];
        let tlen = usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?]));
        let mut at = 2 + tlen;
        let qos = (self.flags >> 1) & 3;
        let pid = if qos > 0 {
            let p = u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]);
            at += 2;
            p
        } else {
            0
        };
        Some((pid, b.get(at..)?))
    }
}

/// Takes one whole packet from the front of `buf`, if there is one.
pub(crate) fn parse(buf: &mut BytesMut) -> Option<Packet> {
    let first = *buf.first()?;
    let (mut len, mut mult, mut at) = (0usize, 1usize, 1usize);
    loop {
        let byte = *buf.get(at)?;
        len += usize::from(byte & 0x7f) * mult;
        mult *= 128;
        at += 1;
        if byte & 0x80 == 0 {
            break;
        }
        if at > 4 {
            return None;
        }
    }
    if buf.len() < at + len {
        return None;
    }
    buf.advance(at);
    Some(Packet {
        kind: first >> 4,
        flags: first & 0x0f,
        body: buf.split_to(len),
    })
}

/// Reads until a packet of `kind` arrives.
async fn expect(rd: &mut OwnedReadHalf, buf: &mut BytesMut, kind: u8) -> Result<Packet, String> {
    loop {
        while let Some(p) = parse(buf) {
            if p.kind == kind {
                return Ok(p);
            }
        }
        if rd.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return Err(format!("mqtt: closed while waiting for packet type {kind}"));
        }
    }
}

/// A connection after CONNACK (clean session, no keep-alive: runs are
/// short), with its read buffer.
pub(crate) async fn connect(
    addr: &str,
    client_id: &str,
) -> Result<(OwnedReadHalf, OwnedWriteHalf, BytesMut), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("mqtt connect {addr}: {e}"))?;
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let mut out = BytesMut::new();
    out.put_u8(0x10);
    put_len(&mut out, 10 + 2 + client_id.len());
    put_str(&mut out, b"MQTT");
    out.put_u8(4); // protocol level 3.1.1
    out.put_u8(0x02); // clean session
    out.put_u16(0); // no keep-alive
    put_str(&mut out, client_id.as_bytes());
    wr.write_all(&out).await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let ack = expect(&mut rd, &mut buf, CONNACK).await?;
    if ack.body.get(1) != Some(&0) {
        return Err(format!("mqtt: connection refused ({:?})", ack.body.get(1)));
    }
    Ok((rd, wr, buf))
}

/// Subscribes to `topic` at QoS 1 and waits for the SUBACK.
pub(crate) async fn subscribe(
    rd: &mut OwnedReadHalf,
    wr: &mut OwnedWriteHalf,
    buf: &mut BytesMut,
    topic: &str,
) -> Result<(), String> {
    let mut out = BytesMut::new();
    out.put_u8(0x82);
    put_len(&mut out, 2 + 2 + topic.len() + 1);
    out.put_u16(1);
    put_str(&mut out, topic.as_bytes());
    out.put_u8(1);
    wr.write_all(&out).await.map_err(|e| e.to_string())?;
    expect(rd, buf, SUBACK).await.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_roundtrip_through_the_parser() {
        let mut b = BytesMut::new();
        put_publish(&mut b, b"a/b", 7, &[9u8; 300]);
        put_puback(&mut b, 7);
        let p = parse(&mut b).expect("publish");
        assert_eq!(p.kind, PUBLISH);
        let (pid, payload) = p.publish().expect("parsed");
        assert_eq!((pid, payload.len()), (7, 300));
        let a = parse(&mut b).expect("puback");
        assert_eq!((a.kind, &a.body[..]), (PUBACK, &[0, 7][..]));
        assert!(parse(&mut b).is_none());
        // A partial packet waits for the rest.
        let mut half = BytesMut::new();
        put_publish(&mut half, b"t", 1, b"xyz");
        let whole = half.clone();
        half.truncate(4);
        assert!(parse(&mut half).is_none());
        let mut whole = whole;
        assert!(parse(&mut whole).is_some());
    }
}
