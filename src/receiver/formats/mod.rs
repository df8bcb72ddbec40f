//! Webhook formats: each turns one signed HTTP request into canonical [`ProductChange`]s.
//!
//! [`verify_and_parse`] always verifies the signature first, over the raw body bytes and in
//! constant time, and only then parses JSON: an unauthenticated sender must not be able to
//! reach the parser, nor learn anything from its error messages. [`parse_only`] is the
//! second half alone, for replaying bodies the inbox stored after they were verified.
//!
//! One module per format: [`akeneo`] (Akeneo Events API), [`event_platform`] (Akeneo Event
//! Platform, CloudEvents), [`standard_webhooks`] and [`hmac`] (generic HMAC header); the
//! last two carry pimsync's own JSON payload, described in [`pimsync_payload`].

use axum::http::{HeaderMap, StatusCode};
use pimsync_connectors::ProductChange;

use crate::config::SourceFormat;
use crate::receiver::signature::SignatureError;

pub mod akeneo;
mod akeneo_body;
pub mod event_platform;
pub mod hmac;
mod json;
pub mod pimsync_payload;
pub mod standard_webhooks;

/// One request as the receiver got it.
#[derive(Clone, Copy)]
pub struct Inbound<'a> {
    pub headers: &'a HeaderMap,
    /// The raw body: signatures cover these exact bytes.
    pub body: &'a [u8],
    /// The receiver's clock, for timestamp windows (a parameter so tests are exact).
    pub now_unix: i64,
}

/// Shows header names and the body length only: the headers hold signatures, and a
/// request logged whole would put them in the logs.
impl std::fmt::Debug for Inbound<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inbound")
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("body_len", &self.body.len())
            .field("now_unix", &self.now_unix)
            .finish()
    }
}

/// What a verified request carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The sender's id for this delivery, for deduplication of retries; `None` when the
    /// format has none.
    pub delivery_id: Option<String>,
    pub changes: Vec<ProductChange>,
    /// Headers stored with the raw body for audit and replay, lowercase names, in a fixed
    /// order. Never a signature header: the inbox must not become a store of valid
    /// signatures that could be replayed elsewhere.
    pub kept_headers: Vec<(String, String)>,
}

/// Why a request is refused. Messages are short, name the failed check or the faulty
/// field, and never contain a signature or a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// Missing, invalid or stale signature: 401.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// Authentic but not understood: 400. The sender must fix the message; retrying the
    /// same body will not help.
    #[error("malformed: {0}")]
    Malformed(String),
}

impl Rejection {
    pub fn status(&self) -> StatusCode {
        match self {
            Rejection::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Rejection::Malformed(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The message without the variant prefix, for a response body.
    pub fn reason(&self) -> &str {
        match self {
            Rejection::Unauthorized(m) | Rejection::Malformed(m) => m,
        }
    }
}

impl From<SignatureError> for Rejection {
    fn from(e: SignatureError) -> Rejection {
        Rejection::Unauthorized(e.to_string())
    }
}

/// Verifies the request's signature for `format`, then parses it.
pub fn verify_and_parse(format: &SourceFormat, inbound: &Inbound<'_>) -> Result<Parsed, Rejection> {
    let Inbound {
        headers,
        body,
        now_unix,
    } = *inbound;
    match format {
        SourceFormat::Akeneo { secret, tolerance } => {
            akeneo::verify(secret.expose(), headers, body, now_unix, *tolerance)?;
        }
        SourceFormat::AkeneoEventPlatform { primary, secondary } => {
            let mut secrets = vec![primary.expose()];
            secrets.extend(secondary.as_ref().map(|s| s.expose()));
            event_platform::verify(&secrets, headers, body)?;
        }
        SourceFormat::StandardWebhooks { secrets, tolerance } => {
            let secrets: Vec<&[u8]> = secrets.iter().map(|s| s.expose()).collect();
            standard_webhooks::verify(&secrets, headers, body, now_unix, *tolerance)?;
        }
        SourceFormat::Hmac {
            header,
            prefix,
            encoding,
            secret,
            ..
        } => {
            hmac::verify(
                secret.expose(),
                header,
                prefix.as_deref(),
                *encoding,
                headers,
                body,
            )?;
        }
    }
    parse_only(format, headers, body)
}

/// Re-parses a stored body without signature checks (inbox replay uses it). Only for
/// bodies that were verified when they arrived.
pub fn parse_only(
    format: &SourceFormat,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Parsed, Rejection> {
    match format {
        SourceFormat::Akeneo { .. } => akeneo::parse(headers, body),
        SourceFormat::AkeneoEventPlatform { .. } => event_platform::parse(headers, body),
        SourceFormat::StandardWebhooks { .. } => standard_webhooks::parse(headers, body),
        SourceFormat::Hmac {
            header,
            delivery_id_header,
            ..
        } => hmac::parse(header, delivery_id_header.as_deref(), headers, body),
    }
}

/// The values of the named headers that are present and printable, in the order of
/// `names`, with lowercase names.
fn keep_headers(headers: &HeaderMap, names: &[&str]) -> Vec<(String, String)> {
    let mut kept = Vec::new();
    for name in names {
        let name = name.to_ascii_lowercase();
        if kept.iter().any(|(n, _): &(String, String)| *n == name) {
            continue;
        }
        for value in headers.get_all(name.as_str()) {
            if let Ok(value) = value.to_str() {
                kept.push((name.clone(), value.to_owned()));
            }
        }
    }
    kept
}

#[cfg(test)]
pub(crate) mod test_support {
    use axum::http::{HeaderMap, HeaderName, HeaderValue};

    pub(crate) fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    pub(crate) fn unauthorized(result: Result<impl std::fmt::Debug, super::Rejection>) -> String {
        match result {
            Err(super::Rejection::Unauthorized(m)) => m,
            other => panic!("expected Unauthorized, got {other:?}"),
        }
    }

    pub(crate) fn malformed(result: Result<impl std::fmt::Debug, super::Rejection>) -> String {
        match result {
            Err(super::Rejection::Malformed(m)) => m,
            other => panic!("expected Malformed, got {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keep_headers_lowercases_keeps_repeats_and_skips_absent() {
        let h = test_support::headers(&[
            ("Content-Type", "application/json"),
            ("ce-a", "1"),
            ("ce-a", "2"),
        ]);
        assert_eq!(
            keep_headers(&h, &["user-agent", "Content-Type", "ce-a"]),
            vec![
                ("content-type".into(), "application/json".into()),
                ("ce-a".into(), "1".into()),
                ("ce-a".into(), "2".into()),
            ]
        );
    }

    #[test]
    fn inbound_debug_hides_header_values() {
        let h = test_support::headers(&[("x-hub-signature-256", "sha256=deadbeef")]);
        let shown = format!(
            "{:?}",
            Inbound {
                headers: &h,
                body: b"{}",
                now_unix: 7
            }
        );
        assert!(shown.contains("x-hub-signature-256"));
        assert!(!shown.contains("deadbeef"));
    }

    #[test]
    fn rejection_maps_to_status() {
        assert_eq!(
            Rejection::Unauthorized("x".into()).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            Rejection::Malformed("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
    }
}
