//! `[targets.webhook]`: signed Standard Webhooks events to one URL. The signing secrets are
//! decoded like a `standard-webhooks` source's (one decoder, in the connectors crate), and
//! extra headers may take their values from secret references, since they often carry a
//! receiver's API key.

use std::time::Duration;

use pimsync_connectors::webhook::{RESERVED_HEADERS, WebhookSettings};
use toml::de::DeValue;

use super::super::reader::{Section, Value};
use super::super::sources::decode_whsec;
use super::super::{TargetKind, WebhookTarget};

pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// `request_timeout`: the target's `delivery.request_timeout` (None if that table is
/// wrong), which bounds every apply: the HTTP timeout defaults to the smaller of it and
/// 10 s, and may not exceed it.
pub(super) fn webhook(
    mut s: Section<'_, '_>,
    request_timeout: Option<Duration>,
) -> Option<TargetKind> {
    let url = s.required_str("url").filter(|url| check_url(&s, url));
    let items = s.secret_list("secrets");
    let count = items.len();
    let keys: Vec<Vec<u8>> = items
        .into_iter()
        .filter_map(|item| decode_whsec(&s, item))
        .map(|secret| secret.expose().to_vec())
        .collect();
    let headers = s.subsection("headers").map(read_headers);
    let bound = request_timeout.unwrap_or(Duration::MAX);
    let timeout = s.duration("timeout", DEFAULT_TIMEOUT.min(bound));
    if timeout.is_zero() {
        s.invalid("timeout", "must be greater than 0");
    } else if timeout > bound {
        let msg = "must not exceed delivery.request_timeout, which bounds every apply";
        s.invalid("timeout", msg);
    }
    let coalesce = s.bool("coalesce", true);
    s.finish();
    if keys.is_empty() || keys.len() != count || timeout.is_zero() || timeout > bound {
        return None;
    }
    Some(TargetKind::Webhook(Box::new(WebhookTarget {
        settings: WebhookSettings {
            url: url?,
            keys,
            headers: headers.unwrap_or(Some(Vec::new()))?,
            timeout,
            // Filled from `[targets.filter] changed` once the whole target is read.
            watch: Vec::new(),
        },
        coalesce,
    })))
}

/// The endpoint: http(s), a host, no whitespace, no fragment. A query string is kept
/// (some receivers put an account id there).
fn check_url(s: &Section<'_, '_>, url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let problem = match rest {
        None => Some("must start with http:// or https://"),
        Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => Some("has no host"),
        Some(_) if url.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Some("must not contain whitespace")
        }
        Some(_) if url.contains('#') => Some("must not contain '#'"),
        Some(_) => None,
    };
    if let Some(problem) = problem {
        s.invalid("url", problem);
    }
    problem.is_none()
}

/// `headers = { "X-Account" = "acme", Authorization = { env = "AGENCY_TOKEN" } }`: names
/// are HTTP tokens and may not replace the headers pimsync signs; values are strings or
/// secret references. None when any entry is wrong (each is reported).
fn read_headers(h: Section<'_, '_>) -> Option<Vec<(String, String)>> {
    let ctx = h.ctx();
    let mut out = Some(Vec::new());
    for (name, item) in h.secret_entries() {
        let Some(secret) = item.value else {
            out = None;
            continue;
        };
        let name_ok = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        let problem = if !name_ok {
            Some(format!("\"{name}\" is not a valid HTTP header name"))
        } else if RESERVED_HEADERS
            .iter()
            .any(|r| r.eq_ignore_ascii_case(&name))
        {
            Some("set by pimsync for every event; it cannot be replaced".to_owned())
        } else {
            None
        };
        let value = String::from_utf8(secret.expose().to_vec())
            .ok()
            .filter(|v| v.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)));
        match (problem, value) {
            (Some(problem), _) => {
                ctx.error(item.pos, item.path, problem);
                out = None;
            }
            // Never echo the value: it may be a credential.
            (None, None) => {
                let msg = "value must be printable ASCII (no line breaks)";
                ctx.error(item.pos, item.path, msg);
                out = None;
            }
            (None, Some(value)) => {
                if let Some(list) = out.as_mut() {
                    list.push((name, value));
                }
            }
        }
    }
    out
}

/// A `[targets.filter] changed` entry: an attribute name or `{ attribute, locale, scope }`.
pub(super) fn watched_source(
    s: &Section<'_, '_>,
    path: &str,
    value: &Value<'_>,
) -> Option<super::FieldSource> {
    let pos = value.span().start;
    match value.get_ref() {
        DeValue::String(name) if !name.is_empty() => Some(super::FieldSource::attribute(name)),
        DeValue::Table(table) => {
            let mut t = Section::new(s.ctx(), path.to_owned(), table, pos);
            let attribute = t.required_str("attribute");
            let locale = t.optional_str("locale");
            let scope = t.optional_str("scope");
            let source = attribute.map(|attribute| super::FieldSource {
                attribute,
                locale,
                scope,
                currency: None,
            });
            t.finish();
            source
        }
        _ => {
            let msg = "expected an attribute name or { attribute = \"…\", locale = \"…\", scope = \"…\" }";
            s.ctx().error(pos, path, msg);
            None
        }
    }
}
