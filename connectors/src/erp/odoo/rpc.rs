//! Odoo's JSON-2 transport: `POST {base}/json/2/{model}/{method}` with named arguments,
//! and the classification of its `{name, message, …}` errors.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::connector::ApplyError;
use crate::http::{classify_status, classify_transport, retry_after, shorten};

/// A failed call: the classified error, and Odoo's exception name so the caller can react
/// to a specific one (a `MissingError` on a remembered id means "look it up again").
#[derive(Debug)]
pub(super) struct CallError {
    pub name: Option<String>,
    pub error: ApplyError,
}

impl CallError {
    pub fn is_missing_record(&self) -> bool {
        self.name.as_deref() == Some("odoo.exceptions.MissingError")
    }
}

impl From<CallError> for ApplyError {
    fn from(e: CallError) -> ApplyError {
        e.error
    }
}

pub(super) struct Rpc {
    pub client: reqwest::Client,
    pub base_url: String,
    pub database: Option<String>,
    /// Sent as `Authorization: bearer …`; never logged.
    pub api_key: String,
}

impl Rpc {
    pub async fn call(&self, model: &str, method: &str, args: Value) -> Result<Value, CallError> {
        let url = format!("{}/json/2/{model}/{method}", self.base_url);
        let mut request = self
            .client
            .post(&url)
            .header("Authorization", format!("bearer {}", self.api_key))
            .json(&args);
        if let Some(db) = &self.database {
            request = request.header("X-Odoo-Database", db);
        }
        let response = request.send().await.map_err(|e| CallError {
            name: None,
            error: classify_transport(&e),
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = super::super::body_text(response).await;
        if !status.is_success() {
            return Err(classify_error(status, &headers, &body));
        }
        serde_json::from_str(&body).map_err(|e| CallError {
            name: None,
            // A 2xx that is not JSON is a proxy or a wrong base URL, not a transient state.
            error: ApplyError::permanent(format!(
                "{model}.{method}: response is not JSON ({e}): {}",
                shorten(&body, 200)
            )),
        })
    }
}

/// Odoo exceptions that a retry cannot fix: the data or the permissions are wrong.
const PERMANENT: &[&str] = &[
    "odoo.exceptions.UserError",
    "odoo.exceptions.ValidationError",
    "odoo.exceptions.AccessError",
    "odoo.exceptions.AccessDenied",
    "odoo.exceptions.MissingError",
    "odoo.exceptions.RedirectWarning",
    "builtins.ValueError",
    "builtins.TypeError",
    "builtins.KeyError",
];

/// Transient database conflicts: another transaction touched the same rows.
const RETRYABLE: &[&str] = &[
    "odoo.exceptions.ConcurrencyError",
    "psycopg2.errors.SerializationFailure",
    "psycopg2.errors.LockNotAvailable",
    "psycopg2.errors.DeadlockDetected",
    "psycopg2.OperationalError",
    "psycopg.errors.SerializationFailure",
];

/// Classifies by exception class first (Odoo answers some user errors with 500 and some
/// transient conflicts with 4xx depending on version), then by HTTP status.
pub(super) fn classify_error(status: StatusCode, headers: &HeaderMap, body: &str) -> CallError {
    let parsed: Option<Value> = serde_json::from_str(body).ok();
    let field = |key: &str| {
        parsed
            .as_ref()
            .and_then(|v| v.get(key))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let name = field("name");
    let text = match (&name, field("message")) {
        (Some(name), Some(message)) => format!("{name}: {message}"),
        (None, Some(message)) => message,
        _ => body.to_owned(),
    };
    let message = format!("HTTP {}: {}", status.as_u16(), shorten(&text, 500));
    let error = match name.as_deref() {
        // A rate limit or maintenance page wins over whatever exception produced it.
        _ if status == StatusCode::TOO_MANY_REQUESTS => classify_status(status, headers, &text),
        Some(n) if RETRYABLE.contains(&n) => ApplyError::Retryable {
            message,
            retry_after: retry_after(headers, std::time::SystemTime::now()),
        },
        Some(n) if PERMANENT.contains(&n) => ApplyError::Permanent { message },
        _ => classify_status(status, headers, &text),
    };
    CallError { name, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classify(status: u16, body: &str) -> CallError {
        let status = StatusCode::from_u16(status).unwrap();
        classify_error(status, &HeaderMap::new(), body)
    }

    #[test]
    fn errors_are_classified_by_exception_then_status() {
        let e = classify(
            422,
            r#"{"name": "odoo.exceptions.ValidationError", "message": "Barcode must be unique", "arguments": [], "debug": "Traceback…"}"#,
        );
        assert_eq!(
            e.error,
            ApplyError::permanent(
                "HTTP 422: odoo.exceptions.ValidationError: Barcode must be unique"
            )
        );
        let e = classify(
            500,
            r#"{"name": "odoo.exceptions.UserError", "message": "no"}"#,
        );
        assert!(matches!(e.error, ApplyError::Permanent { .. }));
        let e = classify(
            500,
            r#"{"name": "psycopg2.errors.SerializationFailure", "message": "could not serialize"}"#,
        );
        assert!(matches!(e.error, ApplyError::Retryable { .. }));
        let e = classify(
            404,
            r#"{"name": "odoo.exceptions.MissingError", "message": "Record does not exist"}"#,
        );
        assert!(e.is_missing_record());
        let e = classify(
            401,
            r#"{"name": "werkzeug.exceptions.Unauthorized", "message": "Invalid apikey"}"#,
        );
        assert!(matches!(e.error, ApplyError::Permanent { .. }));
        let e = classify(503, "<html>maintenance</html>");
        assert!(matches!(e.error, ApplyError::Retryable { .. }));
        let e = classify(
            429,
            r#"{"name": "odoo.exceptions.UserError", "message": "slow down"}"#,
        );
        assert!(matches!(e.error, ApplyError::Throttled { .. }));
    }
}
