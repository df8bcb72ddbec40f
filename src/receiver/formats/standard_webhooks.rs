//! Standard Webhooks (<https://www.standardwebhooks.com/>): headers `webhook-id`,
//! `webhook-timestamp` and `webhook-signature`; the signature is HMAC-SHA256 over
//! `"{id}.{timestamp}.{body}"`, base64, in a space-separated list of `vN,<signature>`
//! entries. The body is pimsync's own payload ([`super::pimsync_payload`]).
//!
//! Signing the id and the timestamp with the body binds the delivery id used for
//! deduplication to the content, and the timestamp window bounds replay.

use std::time::Duration;

use axum::http::HeaderMap;

use pimsync_connectors::standard_webhooks::signature_matches;
pub use pimsync_connectors::standard_webhooks::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};

use super::{Parsed, Rejection, keep_headers, pimsync_payload};
use crate::receiver::signature::{SignatureError, check_timestamp, required_header};

/// Checks the three headers against `secrets` (decoded keys; several during a rotation).
/// Passes when any `v1` entry matches any key; the matching itself is the connectors
/// crate's, the same code the `webhook` target signs with.
pub fn verify(
    secrets: &[&[u8]],
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let id = required_header(headers, ID_HEADER)?;
    let timestamp = required_header(headers, TIMESTAMP_HEADER)?;
    let signatures = required_header(headers, SIGNATURE_HEADER)?;
    check_timestamp(TIMESTAMP_HEADER, timestamp, now_unix, tolerance)?;
    if signature_matches(secrets, id, timestamp, body, signatures) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Parses the pimsync payload; the delivery id is `webhook-id`.
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Rejection> {
    let changes = pimsync_payload::parse(body)?;
    let delivery_id = headers
        .get(ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Ok(Parsed {
        delivery_id,
        changes,
        kept_headers: keep_headers(headers, &[ID_HEADER, TIMESTAMP_HEADER, "content-type"]),
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;
    use crate::config::{Secret, SourceFormat};
    use crate::receiver::formats::test_support::{headers, malformed, unauthorized};
    use crate::receiver::formats::{Inbound, verify_and_parse};

    // The example published in the Standard Webhooks spec
    // (https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md).
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TIMESTAMP: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    // A well-formed signature that matches nothing, from the spec libraries' test suites.
    const DECOY: &str = "Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
    const FIVE_MINUTES: Duration = Duration::from_secs(300);

    fn spec_key() -> Vec<u8> {
        let encoded = SPEC_SECRET.strip_prefix("whsec_").unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap()
    }

    fn spec_headers(signature: &str, timestamp: i64) -> HeaderMap {
        headers(&[
            (ID_HEADER, SPEC_ID),
            (TIMESTAMP_HEADER, &timestamp.to_string()),
            (SIGNATURE_HEADER, signature),
        ])
    }

    fn check(signature: &str, now: i64) -> Result<(), SignatureError> {
        let key = spec_key();
        let headers = spec_headers(signature, SPEC_TIMESTAMP);
        verify(&[&key], &headers, SPEC_BODY, now, FIVE_MINUTES)
    }

    #[test]
    fn spec_vector_passes() {
        assert_eq!(check(SPEC_SIGNATURE, SPEC_TIMESTAMP), Ok(()));
    }

    #[test]
    fn any_v1_entry_may_match_and_other_versions_are_ignored() {
        let list = format!("v1,{DECOY} v2,{DECOY} {SPEC_SIGNATURE} v1,{DECOY}");
        assert_eq!(check(&list, SPEC_TIMESTAMP), Ok(()));
        assert_eq!(
            check(&format!("v1,{DECOY}"), SPEC_TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
        // The right signature under another version tag is not accepted.
        let as_v2 = SPEC_SIGNATURE.replacen("v1,", "v2,", 1);
        assert_eq!(check(&as_v2, SPEC_TIMESTAMP), Err(SignatureError::Mismatch));
        assert_eq!(
            check("v1,not base64!", SPEC_TIMESTAMP),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn body_id_and_timestamp_are_all_signed() {
        let key = spec_key();
        let h = spec_headers(SPEC_SIGNATURE, SPEC_TIMESTAMP);
        let other_body = br#"{"test": 2432232315}"#;
        assert_eq!(
            verify(&[&key], &h, other_body, SPEC_TIMESTAMP, FIVE_MINUTES),
            Err(SignatureError::Mismatch)
        );
        let mut other_id = h.clone();
        other_id.insert(ID_HEADER, "msg_other".parse().unwrap());
        assert_eq!(
            verify(&[&key], &other_id, SPEC_BODY, SPEC_TIMESTAMP, FIVE_MINUTES),
            Err(SignatureError::Mismatch)
        );
        let shifted = spec_headers(SPEC_SIGNATURE, SPEC_TIMESTAMP + 1);
        assert_eq!(
            verify(&[&key], &shifted, SPEC_BODY, SPEC_TIMESTAMP, FIVE_MINUTES),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_configured_key_may_match() {
        let key = spec_key();
        let h = spec_headers(SPEC_SIGNATURE, SPEC_TIMESTAMP);
        assert_eq!(
            verify(
                &[b"old key", &key],
                &h,
                SPEC_BODY,
                SPEC_TIMESTAMP,
                FIVE_MINUTES
            ),
            Ok(())
        );
        assert_eq!(
            verify(&[b"old key"], &h, SPEC_BODY, SPEC_TIMESTAMP, FIVE_MINUTES),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(&[], &h, SPEC_BODY, SPEC_TIMESTAMP, FIVE_MINUTES),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn timestamps_beyond_tolerance_fail() {
        assert_eq!(check(SPEC_SIGNATURE, SPEC_TIMESTAMP + 300), Ok(()));
        assert_eq!(check(SPEC_SIGNATURE, SPEC_TIMESTAMP - 300), Ok(()));
        assert_eq!(
            check(SPEC_SIGNATURE, SPEC_TIMESTAMP + 301),
            Err(SignatureError::TooOld)
        );
        assert_eq!(
            check(SPEC_SIGNATURE, SPEC_TIMESTAMP - 301),
            Err(SignatureError::TooNew)
        );
    }

    #[test]
    fn missing_headers_fail() {
        let key = spec_key();
        for name in [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER] {
            let mut h = spec_headers(SPEC_SIGNATURE, SPEC_TIMESTAMP);
            h.remove(name);
            assert_eq!(
                verify(&[&key], &h, SPEC_BODY, SPEC_TIMESTAMP, FIVE_MINUTES),
                Err(SignatureError::MissingHeader(name.into()))
            );
        }
    }

    fn sign(key: &[u8], id: &str, ts: i64, body: &[u8]) -> String {
        let tag = crate::receiver::signature::hmac_sha256(
            key,
            &[id.as_bytes(), b".", ts.to_string().as_bytes(), b".", body],
        );
        format!(
            "v1,{}",
            base64::engine::general_purpose::STANDARD.encode(tag)
        )
    }

    #[test]
    fn verify_and_parse_end_to_end() {
        let key = spec_key();
        let format = SourceFormat::StandardWebhooks {
            secrets: vec![Secret::new(key.clone())],
            tolerance: FIVE_MINUTES,
        };
        let body = br#"{"changes": [{"key": "SKU-1", "op": "delete", "version": 3}]}"#;
        let mut h = spec_headers(&sign(&key, SPEC_ID, SPEC_TIMESTAMP, body), SPEC_TIMESTAMP);
        h.insert("content-type", "application/json".parse().unwrap());
        h.insert("user-agent", "pim/1".parse().unwrap());
        let parsed = verify_and_parse(
            &format,
            &Inbound {
                headers: &h,
                body,
                now_unix: SPEC_TIMESTAMP,
            },
        )
        .unwrap();
        assert_eq!(parsed.delivery_id.as_deref(), Some(SPEC_ID));
        assert_eq!(parsed.changes[0].key.as_deref(), Some("SKU-1"));
        assert_eq!(
            parsed.kept_headers,
            vec![
                (ID_HEADER.to_owned(), SPEC_ID.to_owned()),
                (TIMESTAMP_HEADER.to_owned(), SPEC_TIMESTAMP.to_string()),
                ("content-type".to_owned(), "application/json".to_owned()),
            ]
        );
        assert_eq!(parse(&h, body).unwrap(), parsed);

        // The spec's own body verifies but is not a pimsync payload.
        let spec = spec_headers(SPEC_SIGNATURE, SPEC_TIMESTAMP);
        let result = verify_and_parse(
            &format,
            &Inbound {
                headers: &spec,
                body: SPEC_BODY,
                now_unix: SPEC_TIMESTAMP,
            },
        );
        assert_eq!(malformed(result), r#"body: unknown field "test""#);

        // Signature is checked before the body is looked at, and the reason leaks nothing.
        let forged = spec_headers(&format!("v1,{DECOY}"), SPEC_TIMESTAMP);
        let reason = unauthorized(verify_and_parse(
            &format,
            &Inbound {
                headers: &forged,
                body: b"not json",
                now_unix: SPEC_TIMESTAMP,
            },
        ));
        assert_eq!(reason, "signature does not match");
    }
}
