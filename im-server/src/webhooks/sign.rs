//! Webhook signatures: HMAC-SHA256 over the timestamp and the body.
//!
//! Every request carries `Imkit-Signature: t=<unix seconds>,v1=<hex>`,
//! where the hex is HMAC-SHA256, keyed with the endpoint's secret, of
//! `"<t>.<body>"`. A receiver recomputes it over the raw body, compares in
//! constant time, and refuses a `t` too far from its clock (replays).
//! docs/webhooks.md shows the check in several languages.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::http::json::unhex;

/// The header that carries the signature.
pub const SIGNATURE_HEADER: &str = "imkit-signature";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], t: u64, body: &[u8]) -> HmacSha256 {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `Imkit-Signature` value for `body` sent at `t` (Unix seconds).
pub fn sign(secret: &[u8], t: u64, body: &[u8]) -> String {
    let tag = mac(secret, t, body).finalize().into_bytes();
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    format!("t={t},v1={hex}")
}

/// Why a signature was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The header is not `t=<seconds>,v1=<hex>`.
    #[error("the signature header is malformed")]
    Malformed,
    /// The timestamp is further from now than the tolerance.
    #[error("the signature's timestamp is {0} s from now, outside the tolerance")]
    Stale(u64),
    /// No `v1` value matches the body.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks a signature header against the raw body, at `now` (Unix
/// seconds), accepting timestamps up to `tolerance_secs` away. Several `v1`
/// values may be present (while a secret is rotated); one must match.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<(), SignatureError> {
    let mut t = None;
    let mut tags = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => t = Some(v.parse::<u64>().map_err(|_| SignatureError::Malformed)?),
            Some(("v1", v)) => tags.push(unhex(v).ok_or(SignatureError::Malformed)?),
            Some(_) => {}
            None => return Err(SignatureError::Malformed),
        }
    }
    let t = t.ok_or(SignatureError::Malformed)?;
    if tags.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let skew = now.abs_diff(t);
    if skew > tolerance_secs {
        return Err(SignatureError::Stale(skew));
    }
    let expected = mac(secret, t, body);
    if tags
        .iter()
        .any(|tag| expected.clone().verify_slice(tag).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_and_a_changed_body_does_not() {
        let header = sign(b"s3cret", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert_eq!(
            verify(b"s3cret", &header, b"{\"a\":1}", 1_700_000_100, 300),
            Ok(())
        );
        assert_eq!(
            verify(b"s3cret", &header, b"{\"a\":2}", 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, b"{\"a\":1}", 1_700_000_100, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"s3cret", &header, b"{\"a\":1}", 1_700_001_000, 300),
            Err(SignatureError::Stale(1_000))
        );
        assert_eq!(
            verify(b"s3cret", "v1=00", b"", 0, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn a_known_vector() {
        // HMAC-SHA256(key "key", "1.body"), computed independently with
        // `printf '1.body' | openssl dgst -sha256 -hmac key`.
        let header = sign(b"key", 1, b"body");
        assert_eq!(
            header,
            "t=1,v1=91b5374b153842ad05b2c4eab9349b8321b14703165bd3fb8b034dfb8be98ae5"
        );
    }
}
