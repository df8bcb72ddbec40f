//! The generic format: HMAC-SHA256 of the raw body in one configured header, hex or base64,
//! optionally behind a prefix: GitHub-style `X-Hub-Signature-256: sha256=<hex>`,
//! Shopify-style `X-Shopify-Hmac-Sha256: <base64>`. The body is pimsync's own payload
//! ([`super::pimsync_payload`]).
//!
//! Nothing in this scheme is timestamped, so a captured request can be replayed; the
//! delivery id header (when the sender has one) at least lets the store drop duplicates.
//! Prefer `standard-webhooks` when the sender supports it.

use axum::http::HeaderMap;

use super::{Parsed, Rejection, keep_headers, pimsync_payload};
use crate::config::SignatureEncoding;
use crate::receiver::signature::{SignatureError, decode_tag, required_header, verify_hmac_sha256};

/// Checks the signature in `header`. A value without the configured `prefix` is invalid:
/// stripping it leniently would let a `sha1=` signature be compared as if it were SHA-256.
pub fn verify(
    secret: &[u8],
    header: &str,
    prefix: Option<&str>,
    encoding: SignatureEncoding,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), SignatureError> {
    let value = required_header(headers, header)?.trim();
    let encoded = match prefix {
        Some(prefix) => value
            .strip_prefix(prefix)
            .ok_or_else(|| SignatureError::InvalidHeader(header.to_owned()))?,
        None => value,
    };
    let tag = decode_tag(encoded, encoding)
        .ok_or_else(|| SignatureError::InvalidHeader(header.to_owned()))?;
    if verify_hmac_sha256(secret, &[body], &tag) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Parses the pimsync payload. `signature_header` is passed so that it is never kept, even
/// if the delivery id header was (mis)configured to the same name.
pub fn parse(
    signature_header: &str,
    delivery_id_header: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Parsed, Rejection> {
    let changes = pimsync_payload::parse(body)?;
    let delivery_id = delivery_id_header
        .and_then(|name| headers.get(name))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    let mut names = vec!["content-type", "user-agent"];
    names.extend(delivery_id_header);
    let mut kept_headers = keep_headers(headers, &names);
    kept_headers.retain(|(name, _)| !name.eq_ignore_ascii_case(signature_header));
    Ok(Parsed {
        delivery_id,
        changes,
        kept_headers,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Secret, SourceFormat};
    use crate::receiver::formats::test_support::{headers, unauthorized};
    use crate::receiver::formats::{Inbound, verify_and_parse};

    const SECRET: &[u8] = b"It's a Secret to Everybody";
    const BODY: &[u8] =
        br#"{"changes":[{"key":"SKU-1","op":"upsert","version":1,"product":{"family":"chairs"}}]}"#;
    // Computed independently: with BODY (no trailing newline) in the file `body`,
    // python3 -c "import hmac,hashlib; print(hmac.new(b\"It's a Secret to Everybody\",
    //   open('body','rb').read(), hashlib.sha256).hexdigest())"
    const BODY_HEX: &str = "26357cfe568c6962d6e15bdbc1174b620984b5b7a84bcd170a8861b4c72ef53b";
    // The same HMAC as `base64.b64encode(hmac.new(...).digest())`.
    const BODY_BASE64: &str = "JjV8/laMaWLW4VvbwRdLYgmEtbeoS80XCohhtMcu9Ts=";

    fn github() -> SourceFormat {
        SourceFormat::Hmac {
            header: "X-Hub-Signature-256".into(),
            prefix: Some("sha256=".into()),
            encoding: SignatureEncoding::Hex,
            secret: Secret::new(SECRET),
            delivery_id_header: Some("X-GitHub-Delivery".into()),
        }
    }

    fn shopify() -> SourceFormat {
        SourceFormat::Hmac {
            header: "X-Shopify-Hmac-Sha256".into(),
            prefix: None,
            encoding: SignatureEncoding::Base64,
            secret: Secret::new(SECRET),
            delivery_id_header: Some("X-Shopify-Webhook-Id".into()),
        }
    }

    fn run(
        format: &SourceFormat,
        pairs: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Parsed, Rejection> {
        verify_and_parse(
            format,
            &Inbound {
                headers: &headers(pairs),
                body,
                now_unix: 0,
            },
        )
    }

    #[test]
    fn github_style_prefixed_hex() {
        let sig = format!("sha256={BODY_HEX}");
        let parsed = run(
            &github(),
            &[
                ("X-Hub-Signature-256", &sig),
                ("X-GitHub-Delivery", "d-1"),
                ("Content-Type", "application/json"),
                ("User-Agent", "GitHub-Hookshot/1"),
            ],
            BODY,
        )
        .unwrap();
        assert_eq!(parsed.delivery_id.as_deref(), Some("d-1"));
        assert_eq!(parsed.changes[0].key.as_deref(), Some("SKU-1"));
        assert_eq!(
            parsed.kept_headers,
            vec![
                ("content-type".to_owned(), "application/json".to_owned()),
                ("user-agent".to_owned(), "GitHub-Hookshot/1".to_owned()),
                ("x-github-delivery".to_owned(), "d-1".to_owned()),
            ]
        );
        // Hex is accepted in upper case too.
        let upper = format!("sha256={}", BODY_HEX.to_ascii_uppercase());
        assert!(run(&github(), &[("X-Hub-Signature-256", &upper)], BODY).is_ok());
    }

    #[test]
    fn shopify_style_base64() {
        let parsed = run(
            &shopify(),
            &[
                ("X-Shopify-Hmac-Sha256", BODY_BASE64),
                ("X-Shopify-Webhook-Id", "w-9"),
            ],
            BODY,
        )
        .unwrap();
        assert_eq!(parsed.delivery_id.as_deref(), Some("w-9"));
        // Hex where base64 is configured does not decode to a 32-byte tag.
        assert_eq!(
            unauthorized(run(
                &shopify(),
                &[("X-Shopify-Hmac-Sha256", BODY_HEX)],
                BODY
            )),
            "signature does not match"
        );
    }

    #[test]
    fn missing_wrong_prefix_and_mismatch() {
        assert_eq!(
            unauthorized(run(&github(), &[], BODY)),
            "missing X-Hub-Signature-256 header"
        );
        let sha1 = format!("sha1={BODY_HEX}");
        assert_eq!(
            unauthorized(run(&github(), &[("X-Hub-Signature-256", &sha1)], BODY)),
            "invalid X-Hub-Signature-256 header"
        );
        assert_eq!(
            unauthorized(run(&github(), &[("X-Hub-Signature-256", BODY_HEX)], BODY)),
            "invalid X-Hub-Signature-256 header"
        );
        assert_eq!(
            unauthorized(run(
                &github(),
                &[("X-Hub-Signature-256", "sha256=zz")],
                BODY
            )),
            "invalid X-Hub-Signature-256 header"
        );
        let sig = format!("sha256={BODY_HEX}");
        let tampered = String::from_utf8(BODY.to_vec())
            .unwrap()
            .replace("chairs", "tables");
        let reason = unauthorized(run(
            &github(),
            &[("X-Hub-Signature-256", &sig)],
            tampered.as_bytes(),
        ));
        assert_eq!(reason, "signature does not match");
        assert!(!reason.contains(BODY_HEX));
    }

    #[test]
    fn delivery_id_is_optional_and_signature_header_is_never_kept() {
        let sig = format!("sha256={BODY_HEX}");
        let parsed = run(&github(), &[("X-Hub-Signature-256", &sig)], BODY).unwrap();
        assert_eq!(parsed.delivery_id, None);
        assert!(parsed.kept_headers.is_empty());

        let misconfigured = SourceFormat::Hmac {
            header: "X-Hub-Signature-256".into(),
            prefix: Some("sha256=".into()),
            encoding: SignatureEncoding::Hex,
            secret: Secret::new(SECRET),
            delivery_id_header: Some("x-hub-signature-256".into()),
        };
        let parsed = run(&misconfigured, &[("X-Hub-Signature-256", &sig)], BODY).unwrap();
        assert!(parsed.kept_headers.is_empty());
    }
}
