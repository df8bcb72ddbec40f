//! Shared pieces of webhook signature verification: HMAC-SHA256 over the raw body bytes,
//! compared in constant time, header lookup, tag decoding and timestamp windows.
//!
//! Every function here works on bytes exactly as received, before any JSON parsing: a
//! signature covers bytes, and re-serialised JSON would not match them. Errors name the
//! header or the check that failed, never a signature, a secret or a computed tag, so they
//! can be logged and returned to the caller as they are.

use std::time::Duration;

use axum::http::HeaderMap;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::config::SignatureEncoding;

type HmacSha256 = Hmac<Sha256>;

/// Why a request failed verification. Every variant is answered 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("missing {0} header")]
    MissingHeader(String),
    /// Present but not usable: not visible ASCII, not a number, not valid hex/base64, or
    /// without the configured prefix.
    #[error("invalid {0} header")]
    InvalidHeader(String),
    #[error("timestamp too old")]
    TooOld,
    /// Reported apart from `TooOld` because it points at a clock skewed on one side.
    #[error("timestamp too far in the future")]
    TooNew,
    #[error("signature does not match")]
    Mismatch,
}

/// HMAC-SHA256 of the concatenation of `parts` (so "<ts>.<body>" needs no copy of the
/// body). Used by the verifiers and by tests and tools that sign requests.
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    mac(key, parts).finalize().into_bytes().into()
}

/// Whether `tag` is the HMAC-SHA256 of `parts` under `key`. The comparison runs in
/// constant time (hmac's `verify_slice`), so response timing reveals nothing about how
/// many leading bytes of a forged tag were right. A tag of the wrong length never matches.
pub fn verify_hmac_sha256(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    mac(key, parts).verify_slice(tag).is_ok()
}

fn mac(key: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        // HMAC hashes long keys and pads short ones: every key length is valid.
        Err(_) => unreachable!("HMAC accepts keys of any length"),
    };
    for part in parts {
        mac.update(part);
    }
    mac
}

/// Decodes a transmitted tag: hex in either case, or standard base64 with padding.
/// Surrounding whitespace is ignored; anything else invalid gives `None`.
pub fn decode_tag(text: &str, encoding: SignatureEncoding) -> Option<Vec<u8>> {
    let text = text.trim();
    match encoding {
        SignatureEncoding::Hex => hex::decode(text).ok(),
        SignatureEncoding::Base64 => base64::engine::general_purpose::STANDARD.decode(text).ok(),
    }
}

/// The first value of header `name` as text. A header that is not visible ASCII is
/// reported as invalid rather than missing, so the operator sees what actually arrived.
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, SignatureError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| SignatureError::InvalidHeader(name.to_owned())),
    }
}

/// Like [`header`], for headers without which a request cannot be verified.
pub fn required_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<&'a str, SignatureError> {
    header(headers, name)?.ok_or_else(|| SignatureError::MissingHeader(name.to_owned()))
}

/// Parses a Unix timestamp (whole seconds) from header `name` and checks that it is within
/// `tolerance` of `now_unix`, on either side. The window bounds replay of a captured
/// request; it is inclusive, so a request exactly `tolerance` old still passes.
pub fn check_timestamp(
    name: &str,
    raw: &str,
    now_unix: i64,
    tolerance: Duration,
) -> Result<i64, SignatureError> {
    let timestamp: i64 = raw
        .trim()
        .parse()
        .map_err(|_| SignatureError::InvalidHeader(name.to_owned()))?;
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if timestamp < now_unix.saturating_sub(tolerance) {
        Err(SignatureError::TooOld)
    } else if timestamp > now_unix.saturating_add(tolerance) {
        Err(SignatureError::TooNew)
    } else {
        Ok(timestamp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 4231, test case 2.
    const KEY: &[u8] = b"Jefe";
    const DATA: &[u8] = b"what do ya want for nothing?";
    const TAG_HEX: &str = "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843";

    #[test]
    fn hmac_matches_rfc_4231_and_parts_concatenate() {
        assert_eq!(hex::encode(hmac_sha256(KEY, &[DATA])), TAG_HEX);
        assert_eq!(
            hex::encode(hmac_sha256(
                KEY,
                &[b"what do ya", b" want ", b"for nothing?"]
            )),
            TAG_HEX
        );
    }

    #[test]
    fn verify_accepts_only_the_exact_tag() {
        let tag = hex::decode(TAG_HEX).unwrap();
        assert!(verify_hmac_sha256(KEY, &[DATA], &tag));
        let mut flipped = tag.clone();
        flipped[31] ^= 1;
        assert!(!verify_hmac_sha256(KEY, &[DATA], &flipped));
        // A truncated tag (a prefix of the right one) must not pass.
        assert!(!verify_hmac_sha256(KEY, &[DATA], &tag[..16]));
        assert!(!verify_hmac_sha256(KEY, &[DATA], &[]));
        assert!(!verify_hmac_sha256(b"Jefe2", &[DATA], &tag));
    }

    #[test]
    fn decode_tag_accepts_either_hex_case_and_padded_base64() {
        let bytes = vec![0xab, 0xcd, 0xef];
        assert_eq!(
            decode_tag("ABcdEF", SignatureEncoding::Hex),
            Some(bytes.clone())
        );
        assert_eq!(
            decode_tag(" abcdef\t", SignatureEncoding::Hex),
            Some(bytes.clone())
        );
        assert_eq!(decode_tag("q83v", SignatureEncoding::Base64), Some(bytes));
        assert_eq!(decode_tag("abcdeg", SignatureEncoding::Hex), None);
        assert_eq!(decode_tag("q83", SignatureEncoding::Base64), None);
    }

    #[test]
    fn timestamp_window_is_inclusive_on_both_sides() {
        let tol = Duration::from_secs(300);
        let now = 1_000_000;
        assert_eq!(check_timestamp("t", "1000000", now, tol), Ok(now));
        assert_eq!(check_timestamp("t", "999700", now, tol), Ok(999_700));
        assert_eq!(check_timestamp("t", "1000300", now, tol), Ok(1_000_300));
        assert_eq!(
            check_timestamp("t", "999699", now, tol),
            Err(SignatureError::TooOld)
        );
        assert_eq!(
            check_timestamp("t", "1000301", now, tol),
            Err(SignatureError::TooNew)
        );
        assert_eq!(
            check_timestamp("t", "12.5", now, tol),
            Err(SignatureError::InvalidHeader("t".into()))
        );
        // Extreme values saturate instead of overflowing.
        assert_eq!(
            check_timestamp("t", &i64::MAX.to_string(), i64::MAX, Duration::MAX),
            Ok(i64::MAX)
        );
    }

    #[test]
    fn non_ascii_header_is_invalid_not_missing() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-sig",
            axum::http::HeaderValue::from_bytes(b"\xff").unwrap(),
        );
        assert_eq!(
            header(&headers, "x-sig"),
            Err(SignatureError::InvalidHeader("x-sig".into()))
        );
        assert_eq!(
            required_header(&headers, "x-other"),
            Err(SignatureError::MissingHeader("x-other".into()))
        );
    }
}
