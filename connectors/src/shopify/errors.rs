//! Turning Shopify's answers into classified `ApplyError`s.
//!
//! GraphQL reports most failures with HTTP 200: top-level `errors` (THROTTLED, access
//! denied, an invalid query) and per-mutation `userErrors` (validation). THROTTLED is a
//! rate-limit wait, not a failure of the product; userErrors are permanent, except the
//! few codes that say "a concurrent or transient condition, try again".

use std::time::Duration;

use serde_json::Value;

use crate::connector::ApplyError;
use crate::http::shorten;

/// userError codes that succeed when the same request is sent again later.
const RETRYABLE_USER_ERRORS: &[&str] = &[
    // Another request with the same idempotency key is still running.
    "IDEMPOTENCY_CONCURRENT_REQUEST",
    // A productSet job failed inside Shopify.
    "JOB_ERROR",
    // Compare-and-swap lost a race (we send null, but a shop app may not).
    "CHANGE_FROM_QUANTITY_STALE",
    "COMPARE_QUANTITY_STALE",
];

/// Top-level error codes that are Shopify-side trouble, not our request's.
const RETRYABLE_TOP_LEVEL: &[&str] = &["INTERNAL_SERVER_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"];

/// The bucket state a response reported (`extensions.cost`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub requested: Option<f64>,
    pub maximum: f64,
    pub available: f64,
    pub restore_rate: f64,
}

pub fn cost_of(body: &Value) -> Option<Cost> {
    let cost = body.get("extensions")?.get("cost")?;
    let status = cost.get("throttleStatus")?;
    let number = |v: &Value, k: &str| v.get(k).and_then(Value::as_f64);
    Some(Cost {
        requested: number(cost, "requestedQueryCost"),
        maximum: number(status, "maximumAvailable")?,
        available: number(status, "currentlyAvailable")?,
        restore_rate: number(status, "restoreRate").filter(|r| *r > 0.0)?,
    })
}

/// How long until the bucket holds `needed` points again.
pub fn wait_for(cost: &Cost, needed: f64) -> Duration {
    let missing = (needed.min(cost.maximum) - cost.available).max(0.0);
    Duration::from_secs_f64(missing / cost.restore_rate).max(Duration::from_millis(100))
}

/// Classifies top-level `errors`, if any. `needed` is the cost we asked for, to compute
/// how long a THROTTLED request must wait.
pub fn top_level(operation: &str, body: &Value, needed: f64) -> Option<ApplyError> {
    let errors = body.get("errors")?.as_array().filter(|e| !e.is_empty())?;
    let code_of = |e: &Value| {
        e.get("extensions")
            .and_then(|x| x.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned()
    };
    let message = errors
        .iter()
        .map(|e| {
            let text = e.get("message").and_then(Value::as_str).unwrap_or("error");
            match code_of(e).as_str() {
                "" => text.to_owned(),
                code => format!("{code}: {text}"),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let message = format!("{operation}: {}", shorten(&message, 500));
    if errors.iter().any(|e| code_of(e) == "THROTTLED") {
        let retry_after = cost_of(body)
            .map(|c| wait_for(&c, c.requested.unwrap_or(needed).max(needed)))
            .unwrap_or(Duration::from_secs(1));
        return Some(ApplyError::Throttled {
            message,
            retry_after,
        });
    }
    if errors
        .iter()
        .all(|e| RETRYABLE_TOP_LEVEL.contains(&code_of(e).as_str()))
    {
        return Some(ApplyError::retryable(message));
    }
    Some(ApplyError::permanent(message))
}

/// Classifies a mutation's `userErrors` list: `Ok` when empty.
pub fn user_errors(operation: &str, errors: Option<&Value>) -> Result<(), ApplyError> {
    let Some(errors) = errors.and_then(Value::as_array).filter(|e| !e.is_empty()) else {
        return Ok(());
    };
    let codes: Vec<&str> = errors
        .iter()
        .filter_map(|e| e.get("code").and_then(Value::as_str))
        .collect();
    let message = format!("{operation}: {}", describe(errors));
    if !codes.is_empty() && codes.iter().all(|c| RETRYABLE_USER_ERRORS.contains(c)) {
        Err(ApplyError::retryable(message))
    } else {
        Err(ApplyError::permanent(message))
    }
}

/// `CODE (field.path): message; …`, bounded.
pub fn describe(errors: &[Value]) -> String {
    let text = errors
        .iter()
        .map(|e| {
            let message = e.get("message").and_then(Value::as_str).unwrap_or("error");
            let code = e.get("code").and_then(Value::as_str);
            let field = e
                .get("field")
                .and_then(Value::as_array)
                .map(|f| {
                    f.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(".")
                })
                .filter(|f| !f.is_empty());
            match (code, field) {
                (Some(c), Some(f)) => format!("{c} ({f}): {message}"),
                (Some(c), None) => format!("{c}: {message}"),
                (None, Some(f)) => format!("{f}: {message}"),
                (None, None) => message.to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    shorten(&text, 1000)
}

/// Whether a userErrors list holds only this code.
pub fn only_code(errors: Option<&Value>, code: &str) -> bool {
    errors.and_then(Value::as_array).is_some_and(|list| {
        !list.is_empty()
            && list
                .iter()
                .all(|e| e.get("code").and_then(Value::as_str) == Some(code))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn throttled_waits_for_the_bucket() {
        let body = json!({
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": {"cost": {"requestedQueryCost": 50, "throttleStatus":
                {"maximumAvailable": 1000.0, "currentlyAvailable": 10, "restoreRate": 20.0}}}
        });
        match top_level("productSet", &body, 10.0) {
            Some(ApplyError::Throttled { retry_after, .. }) => {
                assert_eq!(retry_after, Duration::from_secs(2))
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn user_errors_are_permanent_unless_transient() {
        let permanent = json!([{"code": "INVALID_VARIANT", "field": ["input", "variants", "0"], "message": "bad"}]);
        assert_eq!(
            user_errors("productSet", Some(&permanent)),
            Err(ApplyError::permanent(
                "productSet: INVALID_VARIANT (input.variants.0): bad"
            ))
        );
        let transient =
            json!([{"code": "IDEMPOTENCY_CONCURRENT_REQUEST", "field": null, "message": "busy"}]);
        assert!(matches!(
            user_errors("inventorySetQuantities", Some(&transient)),
            Err(ApplyError::Retryable { .. })
        ));
        assert_eq!(user_errors("x", Some(&json!([]))), Ok(()));
        assert_eq!(user_errors("x", None), Ok(()));
    }

    #[test]
    fn other_top_level_errors_are_permanent() {
        let body = json!({"errors": [{"message": "Access denied", "extensions": {"code": "ACCESS_DENIED"}}]});
        assert!(matches!(
            top_level("productSet", &body, 10.0),
            Some(ApplyError::Permanent { .. })
        ));
        let body = json!({"errors": [{"message": "oops", "extensions": {"code": "INTERNAL_SERVER_ERROR"}}]});
        assert!(matches!(
            top_level("productSet", &body, 10.0),
            Some(ApplyError::Retryable { .. })
        ));
    }
}
