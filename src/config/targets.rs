//! `[[targets]]`: the systems kept in step with the PIM.

mod magento;
mod shopify;

use super::load::{Unique, check_name};
use super::reader::{Entry, Section};
use super::{DeliveryConfig, FieldSource, Mapping, TargetConfig, TargetFilter, TargetKind};

// `kind = "odoo"` and `kind = "rest"`.
mod erp;
mod webhook;

pub(super) const KINDS: &[&str] = &[
    "log", "shopify", "magento", "http", "odoo", "rest", "webhook",
];
pub(super) const DEFAULT_SHOPIFY_API_VERSION: &str = "2026-04";
const SHOPIFY_SUFFIX: &str = ".myshopify.com";

pub(super) fn read_targets(root: &mut Section<'_, '_>) -> Option<Vec<TargetConfig>> {
    let mut names = Unique::default();
    let mut out = Some(Vec::new());
    for section in root.tables("targets") {
        let target = read_target(section, &mut names);
        match (target, out.as_mut()) {
            (Some(target), Some(list)) => list.push(target),
            _ => out = None,
        }
    }
    out
}

fn read_target(mut t: Section<'_, '_>, names: &mut Unique) -> Option<TargetConfig> {
    let name = t
        .required_str("name")
        .filter(|name| check_name(&t, name) && names.check(&t, "name", "target name", name));
    let kind = t.required_str("kind");
    let filter = t.subsection("filter").map(read_filter);
    let mapping = t.subsection("mapping").map(read_mapping);
    let delivery = match t.subsection("delivery") {
        Some(section) => read_delivery(section),
        None => Some(DeliveryConfig::default()),
    };

    // Platform tables for another kind are mistakes (a copy-paste, a changed kind); say so
    // at the table rather than calling the table an unknown key.
    let known_kind = kind.as_deref().filter(|k| KINDS.contains(k));
    for &other in KINDS {
        if Some(other) != known_kind && t.has(other) {
            t.skip(other);
            if let Some(kind) = known_kind {
                let msg = format!(
                    "only allowed when kind = \"{other}\" (this target has kind = \"{kind}\")"
                );
                t.invalid(other, msg);
            }
        }
    }

    let kind = match kind.as_deref() {
        Some("log") => Some(log(&mut t)),
        Some("shopify") => required_table(&mut t, "shopify")
            .and_then(|section| shopify::read(section, mapping.as_ref())),
        Some("magento") => required_table(&mut t, "magento").and_then(magento::magento),
        Some("http") => required_table(&mut t, "http").and_then(http),
        Some("odoo") => required_table(&mut t, "odoo").and_then(erp::odoo),
        Some("rest") => required_table(&mut t, "rest").and_then(erp::rest),
        Some("webhook") => {
            let request_timeout = delivery.as_ref().map(|d| d.request_timeout);
            required_table(&mut t, "webhook").and_then(|s| webhook::webhook(s, request_timeout))
        }
        Some(other) => {
            let expected = KINDS.join(", ");
            t.invalid(
                "kind",
                format!("unknown kind \"{other}\" (expected one of: {expected})"),
            );
            None
        }
        None => None,
    };
    if let (Some(kind), Some(mapping)) = (&kind, &mapping) {
        check_mapping_fields(&t, kind, mapping);
    }
    let filter = filter.unwrap_or_default();
    let mut kind = kind;
    match &mut kind {
        Some(TargetKind::Webhook(webhook)) => {
            webhook.settings.watch = filter.changed.clone();
        }
        Some(other) if !filter.changed.is_empty() => {
            let path = format!("{}.filter.changed", t.path());
            let msg = format!(
                "only for kind = \"webhook\" (a {} target converges to the latest state)",
                other.name()
            );
            t.ctx().error(0, path, msg);
        }
        _ => {}
    }
    t.finish();
    Some(TargetConfig {
        name: name?,
        filter,
        mapping: mapping.unwrap_or_default(),
        delivery: delivery?,
        kind: kind?,
    })
}

fn required_table<'a, 'i>(t: &mut Section<'a, 'i>, key: &'static str) -> Option<Section<'a, 'i>> {
    if !t.has(key) {
        let msg = format!("missing [targets.{key}] table (required for kind = \"{key}\")");
        t.invalid(key, msg);
    }
    t.subsection(key)
}

fn read_filter(mut f: Section<'_, '_>) -> TargetFilter {
    let families = f.string_list("families");
    let categories = f.string_list("categories");
    let enabled_only = f.bool("enabled_only", false);
    let changed = f
        .list_items("changed")
        .into_iter()
        .filter_map(|(path, value)| webhook::watched_source(&f, &path, value))
        .collect();
    let filter = TargetFilter {
        families,
        categories,
        enabled_only,
        changed,
    };
    f.finish();
    filter
}

/// `[targets.mapping]`: `field = "attribute"` or
/// `field = { attribute = "…", locale = "…", scope = "…", currency = "…" }`.
fn read_mapping(m: Section<'_, '_>) -> Mapping {
    let ctx = m.ctx();
    let mut mapping = Mapping::default();
    for (field, entry) in m.entries() {
        let source = match entry {
            Entry::Str(attribute) => Some(FieldSource::attribute(&attribute)),
            Entry::Table(mut table) => {
                let attribute = table.required_str("attribute");
                let source = attribute.map(|attribute| FieldSource {
                    attribute,
                    locale: table.optional_str("locale"),
                    scope: table.optional_str("scope"),
                    currency: table.optional_str("currency"),
                });
                table.finish();
                source
            }
            Entry::Other { path, pos, found } => {
                let msg = format!(
                    "expected an attribute name or {{ attribute = \"…\", locale = \"…\", scope = \"…\", currency = \"…\" }}, found {found}"
                );
                ctx.error(pos, path, msg);
                None
            }
        };
        if let Some(source) = source {
            mapping.fields.insert(field, source);
        }
    }
    mapping
}

/// The platform fields each kind can fill from the mapping; `None` accepts any name.
fn mapping_fields(kind: &TargetKind) -> Option<&'static [&'static str]> {
    match kind {
        // These send the whole canonical product: there is nothing to map.
        TargetKind::Log { .. } | TargetKind::Http { .. } => Some(&[]),
        TargetKind::Shopify(_) => Some(pimsync_connectors::shopify::MAPPING_FIELDS),
        TargetKind::Magento(_) => Some(pimsync_connectors::magento::MAPPING_FIELDS),
        // Custom `x_` fields are checked in `check_mapping_fields`.
        TargetKind::Odoo(_) => Some(pimsync_connectors::erp::odoo::FIELDS),
        // Any name: the templates say which ones they use (checked with the templates).
        TargetKind::Rest(_) => None,
        // Any name: the event's own field names.
        TargetKind::Webhook(_) => None,
    }
}

fn check_mapping_fields(t: &Section<'_, '_>, kind: &TargetKind, mapping: &Mapping) {
    erp::check_mapping(t, kind, mapping);
    let Some(allowed) = mapping_fields(kind) else {
        return;
    };
    let odoo = matches!(kind, TargetKind::Odoo(_));
    for field in mapping.fields.keys() {
        if odoo && pimsync_connectors::erp::odoo::is_mappable(field) {
            continue;
        }
        if !allowed.contains(&field.as_str()) {
            let message = if allowed.is_empty() {
                format!(
                    "kind = \"{}\" sends the whole product and takes no mapping",
                    kind.name()
                )
            } else {
                let custom = if odoo { ", or a custom x_ field" } else { "" };
                format!(
                    "unknown field (expected one of: {}{custom})",
                    allowed.join(", ")
                )
            };
            t.ctx()
                .error(0, format!("{}.mapping.{field}", t.path()), message);
        }
    }
}

fn read_delivery(mut d: Section<'_, '_>) -> Option<DeliveryConfig> {
    let default = DeliveryConfig::default();
    let concurrency = d.integer("concurrency", default.concurrency as u64);
    let rate_limit = d.integer("rate_limit", 0);
    let burst = d.integer("burst", u64::from(default.burst));
    let max_attempts = d.integer("max_attempts", u64::from(default.max_attempts));
    let retry_base = d.duration("retry_base", default.retry_base);
    let retry_cap = d.duration("retry_cap", default.retry_cap);
    let max_retry_after = d.duration("max_retry_after", default.max_retry_after);
    let lease_timeout = d.duration("lease_timeout", default.lease_timeout);
    let batch = d.integer("batch", default.batch as u64);
    let request_timeout = d.duration("request_timeout", default.request_timeout);
    let min_interval = d.duration("min_interval", default.min_interval);
    let mut ok = true;
    let mut check = |good: bool, key: &str, message: &str| {
        if !good {
            d.invalid(key, message);
            ok = false;
        }
    };
    check(
        (1..=1024).contains(&concurrency),
        "concurrency",
        "must be between 1 and 1024",
    );
    check(
        (1..=1_000_000).contains(&burst),
        "burst",
        "must be between 1 and 1000000",
    );
    check(
        (1..=1000).contains(&max_attempts),
        "max_attempts",
        "must be between 1 and 1000",
    );
    check(
        !retry_base.is_zero(),
        "retry_base",
        "must be greater than 0",
    );
    check(
        retry_cap >= retry_base,
        "retry_cap",
        "must be at least retry_base",
    );
    check(
        (1..=10_000).contains(&batch),
        "batch",
        "must be between 1 and 10000",
    );
    check(
        !request_timeout.is_zero(),
        "request_timeout",
        "must be greater than 0",
    );
    check(
        lease_timeout > request_timeout,
        "request_timeout",
        "must be shorter than lease_timeout, or a slow apply would be taken twice",
    );
    check(
        min_interval <= std::time::Duration::from_secs(86_400),
        "min_interval",
        "must be at most 1 day",
    );
    d.finish();
    ok.then_some(DeliveryConfig {
        concurrency: concurrency as usize,
        rate_limit: rate_limit as f64,
        burst: burst as u32,
        max_attempts: max_attempts as u32,
        retry_base,
        retry_cap,
        max_retry_after,
        lease_timeout,
        batch: batch as usize,
        request_timeout,
        min_interval,
    })
}

fn http(mut s: Section<'_, '_>) -> Option<TargetKind> {
    let base_url = s
        .required_str("base_url")
        .filter(|url| check_base_url(&s, url));
    let bearer_token = s.optional_secret("bearer_token");
    s.finish();
    Some(TargetKind::Http {
        base_url: base_url?,
        bearer_token,
    })
}

fn log(t: &mut Section<'_, '_>) -> TargetKind {
    let Some(mut l) = t.subsection("log") else {
        return TargetKind::Log { path: None };
    };
    let path = l.optional_str("path");
    if path.as_deref() == Some("") {
        l.invalid("path", "must not be empty (leave it out to log to stdout)");
    }
    let path = path.map(|p| l.ctx().resolve_path(&p));
    l.finish();
    TargetKind::Log { path }
}

fn is_api_version(v: &str) -> bool {
    let b = v.as_bytes();
    let month = v.get(5..7).and_then(|m| m.parse::<u8>().ok());
    b.len() == 7
        && b[4] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || c.is_ascii_digit())
        && matches!(month, Some(1..=12))
}

/// A base URL that paths are appended to: http(s), a host, no whitespace, and no query or
/// fragment (appending a path after one would silently change the request).
pub(super) fn check_base_url(s: &Section<'_, '_>, url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let problem = match rest {
        None => Some("must start with http:// or https://"),
        Some(rest) if rest.is_empty() || rest.starts_with('/') => Some("has no host"),
        Some(_) if url.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Some("must not contain whitespace")
        }
        Some(_) if url.contains(['?', '#']) => Some("must not contain '?' or '#'"),
        Some(_) => None,
    };
    if let Some(problem) = problem {
        s.invalid("base_url", problem);
    }
    problem.is_none()
}

/// The host part of a URL, for the summary.
pub(super) fn url_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}
