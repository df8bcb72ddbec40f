//! Magento's error bodies turned into classified, readable `ApplyError`s.
//!
//! Magento answers `{"message": "The \"%1\" attribute value is empty.", "parameters":
//! ["name"]}` (or `parameters` as a map for `%fieldName` placeholders), sometimes with more
//! messages under `errors`. An operator reading a dead-lettered change should see the
//! sentence with its blanks filled in, not the template.

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::connector::ApplyError;
use crate::http::classify_status;

/// Why a 401 happens on a store that worked with the same token elsewhere.
pub const AUTH_HINT: &str = "Magento rejected the credentials. Check the integration is \
active and the token is current. Since Magento 2.4.4 an integration access token is only \
accepted as a Bearer token when Stores > Configuration > Services > OAuth > Consumer \
Settings > \"Allow OAuth Access Tokens to be used as standalone Bearer tokens\" is Yes \
(oauth/consumer/enable_integration_as_bearer); otherwise configure OAuth 1.0a signing \
(consumer_key, consumer_secret, access_token, access_token_secret).";

/// Classifies a failed Magento response: 401 is permanent with an auth hint, 408/429/5xx
/// retryable (through the shared classification), other 4xx permanent.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &str) -> ApplyError {
    let message = error_message(body).unwrap_or_else(|| body.to_owned());
    if status == StatusCode::UNAUTHORIZED {
        return ApplyError::permanent(format!(
            "HTTP 401: {} — {AUTH_HINT}",
            crate::http::shorten(&message, 300)
        ));
    }
    classify_status(status, headers, &message)
}

/// The filled-in message(s) of a Magento error body, if it is one.
pub fn error_message(body: &str) -> Option<String> {
    let value: Value = serde_json::from_str(body).ok()?;
    let mut parts = vec![fill(&value)?];
    if let Some(errors) = value.get("errors").and_then(Value::as_array) {
        for error in errors {
            if let Some(text) = fill(error)
                && !parts.contains(&text)
            {
                parts.push(text);
            }
        }
    }
    Some(parts.join("; "))
}

/// One `{message, parameters}` object, with `%1`… (list) or `%name` (map) replaced.
fn fill(error: &Value) -> Option<String> {
    let template = error.get("message")?.as_str()?;
    let text = match error.get("parameters") {
        Some(Value::Array(list)) => {
            let mut text = template.to_owned();
            // Highest index first, so %1 does not eat the start of %10.
            for (i, param) in list.iter().enumerate().rev() {
                text = text.replace(&format!("%{}", i + 1), &param_text(param));
            }
            text
        }
        Some(Value::Object(map)) => {
            let mut names: Vec<&String> = map.keys().collect();
            // Longest name first, so %sku does not eat the start of %skuType.
            names.sort_by_key(|name| std::cmp::Reverse(name.len()));
            let mut text = template.to_owned();
            for name in names {
                text = text.replace(&format!("%{name}"), &param_text(&map[name]));
            }
            text
        }
        _ => template.to_owned(),
    };
    Some(text)
}

fn param_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_and_map_parameters_are_filled_in() {
        assert_eq!(
            error_message(r#"{"message":"The \"%1\" attribute value is empty. Set the attribute and try again.","parameters":["name"]}"#).as_deref(),
            Some("The \"name\" attribute value is empty. Set the attribute and try again.")
        );
        assert_eq!(
            error_message(
                r#"{"message":"%fieldName is a required field.","parameters":{"fieldName":"sku"}}"#
            )
            .as_deref(),
            Some("sku is a required field.")
        );
        let many = r#"{"message":"a %1 %10","parameters":[1,2,3,4,5,6,7,8,9,"ten"]}"#;
        assert_eq!(error_message(many).as_deref(), Some("a 1 ten"));
        assert_eq!(
            error_message(r#"{"message":"Validation failed.","errors":[{"message":"%1 is bad","parameters":["price"]}]}"#).as_deref(),
            Some("Validation failed.; price is bad")
        );
        assert_eq!(error_message("<html>Bad Gateway</html>"), None);
    }

    #[test]
    fn statuses_are_classified_with_the_message() {
        let headers = HeaderMap::new();
        let body = r#"{"message":"URL key for specified store already exists."}"#;
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, &headers, body),
            ApplyError::permanent("HTTP 400: URL key for specified store already exists.")
        );
        match classify(
            StatusCode::UNAUTHORIZED,
            &headers,
            r#"{"message":"The consumer isn't authorized to access %resources.","parameters":{"resources":"Magento_Catalog::products"}}"#,
        ) {
            ApplyError::Permanent { message } => {
                assert!(
                    message.contains("access Magento_Catalog::products"),
                    "{message}"
                );
                assert!(
                    message.contains("enable_integration_as_bearer"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            classify(StatusCode::TOO_MANY_REQUESTS, &headers, ""),
            ApplyError::Throttled { .. }
        ));
        assert!(matches!(
            classify(StatusCode::SERVICE_UNAVAILABLE, &headers, "maintenance"),
            ApplyError::Retryable { .. }
        ));
    }
}
