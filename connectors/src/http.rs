//! Failure classification shared by every HTTP connector: one place answers "is this
//! retryable?", so every platform treats a 503 or a reset connection alike.

use std::time::{Duration, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use crate::connector::ApplyError;

/// Everything but RFC 3986's unreserved characters (`A-Z a-z 0-9 - . _ ~`).
const RESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but unreserved characters (upper-case hex), so any SKU is one
/// URL path segment or query value — a `/` in a SKU never becomes a path separator. This is
/// also RFC 5849's (OAuth 1.0a) encoding.
pub fn encode_component(text: &str) -> String {
    utf8_percent_encode(text, RESERVED).to_string()
}

/// One HTTP client per target: connections pooled across applies, and the dispatcher's
/// per-apply timeout on every request.
pub fn client(timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .pool_max_idle_per_host(64)
        .user_agent(concat!("pimsync/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Classifies a non-success HTTP status. 408, 429 and 5xx are retryable (429 as
/// throttled), every other 4xx is permanent. `body` is the platform's message, shortened.
pub fn classify_status(status: StatusCode, headers: &HeaderMap, body: &str) -> ApplyError {
    let retry_after = retry_after(headers, SystemTime::now());
    let message = format!("HTTP {}: {}", status.as_u16(), shorten(body, 500));
    if status == StatusCode::TOO_MANY_REQUESTS {
        ApplyError::Throttled {
            message,
            retry_after: retry_after.unwrap_or(Duration::from_secs(1)),
        }
    } else if status == StatusCode::REQUEST_TIMEOUT || status.is_server_error() {
        ApplyError::Retryable {
            message,
            retry_after,
        }
    } else {
        ApplyError::Permanent { message }
    }
}

/// Connection errors, timeouts and broken bodies are all worth retrying: the request may
/// or may not have reached the platform, and idempotency makes a repeat safe.
pub fn classify_transport(error: &reqwest::Error) -> ApplyError {
    let kind = if error.is_timeout() {
        "timeout"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    ApplyError::retryable(format!("{kind}: {}", error_chain(error)))
}

/// `Retry-After` as seconds or as an HTTP-date (RFC 9110 §10.2.3).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    parse_retry_after(value, now)
}

pub fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Keeps error messages stored in the outbox readable and bounded.
pub fn shorten(text: &str, max_chars: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(retry: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(value) = retry {
            h.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    #[test]
    fn statuses_are_classified() {
        let none = headers(None);
        for code in [408, 500, 502, 503, 504] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    classify_status(status, &none, ""),
                    ApplyError::Retryable { .. }
                ),
                "{code}"
            );
        }
        for code in [400, 401, 403, 404, 409, 422] {
            let status = StatusCode::from_u16(code).unwrap();
            assert!(
                matches!(
                    classify_status(status, &none, "bad"),
                    ApplyError::Permanent { .. }
                ),
                "{code}"
            );
        }
        assert_eq!(
            classify_status(StatusCode::TOO_MANY_REQUESTS, &headers(Some("7")), ""),
            ApplyError::Throttled {
                message: "HTTP 429: ".into(),
                retry_after: Duration::from_secs(7)
            }
        );
        match classify_status(
            StatusCode::SERVICE_UNAVAILABLE,
            &headers(Some("120")),
            "down",
        ) {
            ApplyError::Retryable {
                retry_after,
                message,
            } => {
                assert_eq!(retry_after, Some(Duration::from_secs(120)));
                assert_eq!(message, "HTTP 503: down");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_accepts_seconds_and_http_dates() {
        let now = httpdate::parse_http_date("Wed, 21 Oct 2015 07:28:00 GMT").unwrap();
        assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        // A date in the past means "now".
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn components_keep_only_unreserved_characters() {
        assert_eq!(encode_component("SKU-1.a_b~"), "SKU-1.a_b~");
        assert_eq!(encode_component("a/b c?é"), "a%2Fb%20c%3F%C3%A9");
    }

    #[test]
    fn long_messages_are_shortened_on_a_char_boundary() {
        assert_eq!(shorten("héllo wörld", 5), "héllo…");
        assert_eq!(shorten("  ok ", 5), "ok");
    }
}
