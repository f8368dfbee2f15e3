//! Feeds arbitrary bytes to the frame decoder and packet parser. The first
//! byte picks how the input is split into reads, to exercise partial frames.
#![no_main]

use bytes::BytesMut;
use imkit_proto::{Frame, Packet};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(split).max(1);
    let mut buf = BytesMut::new();
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match Frame::decode(&mut buf, 64 * 1024) {
                Ok(Some(frame)) => {
                    if let Ok(packet) = Packet::from_frame(&frame) {
                        // Whatever decodes must encode back to a decodable frame.
                        let again = packet.to_frame(frame.header.packet_id);
                        let bytes = again.to_bytes(usize::MAX).expect("re-encode");
                        let mut b = BytesMut::from(&bytes[..]);
                        let back = Frame::decode(&mut b, usize::MAX).expect("valid").expect("whole");
                        assert_eq!(Packet::from_frame(&back).expect("decodes"), packet);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
