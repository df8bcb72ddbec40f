//! Standard Webhooks signatures (<https://www.standardwebhooks.com/>), both ways: the
//! `webhook` target signs what it sends, and the daemon's receiver verifies what PIMs send.
//! One implementation of the algorithm serves both, so the outbound signature is checked
//! by the very code that checks inbound ones (and both by the spec's published vectors).
//!
//! The signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`; the signature is
//! HMAC-SHA256 under the decoded secret, standard base64, sent as `v1,<base64>`. Several
//! secrets (a rotation) give several entries in one space-separated header value.

use base64::Engine as _;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// Standard Webhooks asks for keys of 24 to 64 random bytes; shorter ones are guessable,
/// so they are refused when the config is loaded.
pub const MIN_KEY_BYTES: usize = 24;

type HmacSha256 = Hmac<Sha256>;

/// Why a configured secret is not a usable Standard Webhooks key. Messages never contain
/// the secret (base64's own errors quote the offending byte, so they are not passed on).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("not valid base64 (expected \"whsec_\" followed by base64)")]
    NotBase64,
    #[error("decodes to {0} bytes; Standard Webhooks keys must be at least {MIN_KEY_BYTES}")]
    TooShort(usize),
}

/// Decodes `whsec_<base64>` (or bare base64) to the HMAC key. Padding is optional, as
/// senders differ on it.
pub fn decode_secret(text: &[u8]) -> Result<Vec<u8>, SecretError> {
    const LENIENT: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let text = std::str::from_utf8(text).map_err(|_| SecretError::NotBase64)?;
    let encoded = text.strip_prefix("whsec_").unwrap_or(text);
    let key = LENIENT
        .decode(encoded)
        .map_err(|_| SecretError::NotBase64)?;
    if key.len() < MIN_KEY_BYTES {
        return Err(SecretError::TooShort(key.len()));
    }
    Ok(key)
}

fn mac(key: &[u8], id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC hashes long keys and pads short ones: every key length is valid.
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    for part in [id.as_bytes(), b".", timestamp.as_bytes(), b".", body] {
        mac.update(part);
    }
    mac
}

/// One `v1,<base64>` entry: the signature of this delivery under one key.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let tag = mac(key, id, &timestamp.to_string(), body)
        .finalize()
        .into_bytes();
    format!("v1,{}", STANDARD.encode(tag))
}

/// The `webhook-signature` header value: one entry per key, space-separated, so a
/// receiver holding either the old or the new secret during a rotation can verify.
pub fn signature_header(keys: &[&[u8]], id: &str, timestamp: i64, body: &[u8]) -> String {
    keys.iter()
        .map(|key| sign(key, id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether any `v1` entry of a `webhook-signature` value matches any key, compared in
/// constant time. Entries of other versions (`v1a` is asymmetric; later versions are
/// unknown) are skipped rather than failing, as the spec asks, so a sender can add schemes
/// before receivers understand them. `timestamp` is the header's text as received.
pub fn signature_matches(
    keys: &[&[u8]],
    id: &str,
    timestamp: &str,
    body: &[u8],
    signatures: &str,
) -> bool {
    signatures
        .split(' ')
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|tag| STANDARD.decode(tag.trim()).ok())
        .any(|tag| {
            keys.iter()
                .any(|key| mac(key, id, timestamp, body).verify_slice(&tag).is_ok())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    // The spec's published example, as the official libraries test `sign` with it
    // (standard-webhooks/libraries/*: "sign function works").
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    // The libraries' "multi sig payload is valid" vector: decoys around the valid entry.
    const DECOY: &str = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";

    fn key() -> Vec<u8> {
        decode_secret(SPEC_SECRET.as_bytes()).unwrap()
    }

    #[test]
    fn signing_reproduces_the_spec_vector() {
        assert_eq!(
            sign(&key(), SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY),
            SPEC_SIGNATURE
        );
    }

    #[test]
    fn the_multi_signature_vector_verifies() {
        let list = format!("v1,{DECOY} v2,{DECOY} {SPEC_SIGNATURE} v1,{DECOY}");
        let ts = SPEC_TIMESTAMP.to_string();
        assert!(signature_matches(&[&key()], SPEC_ID, &ts, SPEC_BODY, &list));
        let decoys = format!("v1,{DECOY} v2,{DECOY}");
        assert!(!signature_matches(
            &[&key()],
            SPEC_ID,
            &ts,
            SPEC_BODY,
            &decoys
        ));
    }

    #[test]
    fn every_key_signs_one_entry_and_either_verifies() {
        let old = vec![7u8; 32];
        let header = signature_header(&[&old, &key()], SPEC_ID, SPEC_TIMESTAMP, SPEC_BODY);
        let entries: Vec<&str> = header.split(' ').collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1], SPEC_SIGNATURE);
        let ts = SPEC_TIMESTAMP.to_string();
        assert!(signature_matches(&[&old], SPEC_ID, &ts, SPEC_BODY, &header));
        assert!(signature_matches(
            &[&key()],
            SPEC_ID,
            &ts,
            SPEC_BODY,
            &header
        ));
        assert!(!signature_matches(
            &[&[1u8; 32]],
            SPEC_ID,
            &ts,
            SPEC_BODY,
            &header
        ));
    }

    #[test]
    fn secrets_decode_with_or_without_prefix_and_padding() {
        assert_eq!(
            decode_secret(b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap(),
            key()
        );
        assert_eq!(
            decode_secret(b"whsec_c2hvcnQ="),
            Err(SecretError::TooShort(5))
        );
        assert_eq!(
            decode_secret(b"whsec_not*base64!"),
            Err(SecretError::NotBase64)
        );
        let unpadded = STANDARD.encode([9u8; 25]).trim_end_matches('=').to_owned();
        assert_eq!(decode_secret(unpadded.as_bytes()).unwrap(), vec![9u8; 25]);
    }
}
