//! `[[sources]]`: where webhooks come from and how their signatures are checked.

use std::time::Duration;

use super::load::{Unique, check_name};
use super::reader::{Item, Section};
use super::{Secret, SignatureEncoding, SourceConfig, SourceFormat};

pub(super) const FORMATS: &[&str] = &[
    "akeneo",
    "akeneo-event-platform",
    "standard-webhooks",
    "hmac",
];

/// Keys that only some formats accept; skipped when the format is unknown so the operator
/// sees the format error, not a pile of "unknown key".
const FORMAT_KEYS: &[&str] = &[
    "secret",
    "tolerance",
    "primary_secret",
    "secondary_secret",
    "secrets",
    "header",
    "prefix",
    "encoding",
    "delivery_id_header",
];

pub(super) const DEFAULT_AKENEO_TOLERANCE: Duration = Duration::from_secs(300);
pub(super) const DEFAULT_STANDARD_WEBHOOKS_TOLERANCE: Duration = Duration::from_secs(300);

pub(super) fn read_source(
    mut s: Section<'_, '_>,
    names: &mut Unique,
    paths: &mut Unique,
) -> Option<SourceConfig> {
    let name = s
        .required_str("name")
        .filter(|name| check_name(&s, name) && names.check(&s, "name", "source name", name));
    let path = s
        .required_str("path")
        .filter(|path| check_url_path(&s, path) && paths.check(&s, "path", "source path", path));
    let format = s.required_str("format");
    let format = match format.as_deref() {
        Some("akeneo") => akeneo(&mut s),
        Some("akeneo-event-platform") => akeneo_event_platform(&mut s),
        Some("standard-webhooks") => standard_webhooks(&mut s),
        Some("hmac") => hmac(&mut s),
        other => {
            if let Some(other) = other {
                let expected = FORMATS.join(", ");
                let msg = format!("unknown format \"{other}\" (expected one of: {expected})");
                s.invalid("format", msg);
            }
            for key in FORMAT_KEYS {
                s.skip(key);
            }
            None
        }
    };
    let echo_of = s.optional_str("echo_of");
    let api = super::pull::read_api(&mut s, format.as_ref().map(SourceFormat::name));
    let api_invalid = s.has("api") && api.is_none();
    s.finish();
    if api_invalid {
        return None;
    }
    Some(SourceConfig {
        name: name?,
        path: path?,
        format: format?,
        echo_of,
        api,
    })
}

fn check_url_path(s: &Section<'_, '_>, path: &str) -> bool {
    let problem = if !path.starts_with('/') {
        Some("must start with '/'")
    } else if path.contains(['?', '#']) {
        Some("must not contain '?' or '#'")
    } else if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("must not contain whitespace or control characters")
    } else {
        None
    };
    if let Some(problem) = problem {
        s.invalid("path", problem);
    }
    problem.is_none()
}

fn positive_duration(s: &mut Section<'_, '_>, key: &'static str, default: Duration) -> Duration {
    let value = s.duration(key, default);
    if value.is_zero() {
        s.invalid(key, "must be greater than 0");
    }
    value
}

fn akeneo(s: &mut Section<'_, '_>) -> Option<SourceFormat> {
    let secret = s.secret("secret");
    let tolerance = positive_duration(s, "tolerance", DEFAULT_AKENEO_TOLERANCE);
    Some(SourceFormat::Akeneo {
        secret: secret?,
        tolerance,
    })
}

fn akeneo_event_platform(s: &mut Section<'_, '_>) -> Option<SourceFormat> {
    let primary = s.secret("primary_secret");
    let secondary = s.optional_secret("secondary_secret");
    // A secondary that is set but unresolvable has been reported; don't drop it silently.
    if s.has("secondary_secret") && secondary.is_none() {
        return None;
    }
    Some(SourceFormat::AkeneoEventPlatform {
        primary: primary?,
        secondary,
    })
}

fn standard_webhooks(s: &mut Section<'_, '_>) -> Option<SourceFormat> {
    let items = s.secret_list("secrets");
    let tolerance = positive_duration(s, "tolerance", DEFAULT_STANDARD_WEBHOOKS_TOLERANCE);
    let count = items.len();
    let secrets: Vec<Secret> = items
        .into_iter()
        .filter_map(|item| decode_whsec(s, item))
        .collect();
    if secrets.is_empty() || secrets.len() != count {
        return None;
    }
    Some(SourceFormat::StandardWebhooks { secrets, tolerance })
}

/// `whsec_<base64>` or bare base64, decoded to the HMAC key (the connectors crate's
/// decoder, shared with the `webhook` target). Errors never echo the value.
pub(super) fn decode_whsec(s: &Section<'_, '_>, item: Item<Secret>) -> Option<Secret> {
    match pimsync_connectors::standard_webhooks::decode_secret(item.value.expose()) {
        Ok(key) => Some(Secret::new(key)),
        Err(error) => {
            s.ctx().error(item.pos, item.path, error.to_string());
            None
        }
    }
}

fn hmac(s: &mut Section<'_, '_>) -> Option<SourceFormat> {
    let secret = s.secret("secret");
    let header = s
        .required_str("header")
        .filter(|h| check_header_name(s, "header", h));
    let prefix = s.optional_str("prefix");
    if prefix.as_deref() == Some("") {
        s.invalid("prefix", "must not be empty (leave it out for no prefix)");
    }
    let encoding = match s.optional_str("encoding").as_deref() {
        None | Some("hex") => Some(SignatureEncoding::Hex),
        Some("base64") => Some(SignatureEncoding::Base64),
        Some(other) => {
            let msg = format!("unknown encoding \"{other}\" (expected \"hex\" or \"base64\")");
            s.invalid("encoding", msg);
            None
        }
    };
    let delivery_id_header = s.optional_str("delivery_id_header");
    if let Some(h) = &delivery_id_header {
        check_header_name(s, "delivery_id_header", h);
    }
    Some(SourceFormat::Hmac {
        header: header?,
        prefix: prefix.filter(|p| !p.is_empty()),
        encoding: encoding?,
        secret: secret?,
        delivery_id_header,
    })
}

/// RFC 9110 field names are tokens; anything else would never match a received header.
pub(super) fn check_header_name(s: &Section<'_, '_>, key: &str, name: &str) -> bool {
    let ok = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !ok {
        s.invalid(key, format!("\"{name}\" is not a valid HTTP header name"));
    }
    ok
}
