//! `[[targets]]`: the systems kept in step with the PIM.

use super::load::{Unique, check_name};
use super::reader::Section;
use super::{TargetConfig, TargetFilter, TargetKind};

pub(super) const KINDS: &[&str] = &["log", "shopify", "magento"];
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
        Some("shopify") => required_table(&mut t, "shopify").and_then(shopify),
        Some("magento") => required_table(&mut t, "magento").and_then(magento),
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
    t.finish();
    Some(TargetConfig {
        name: name?,
        filter: filter.unwrap_or_default(),
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
    let filter = TargetFilter {
        families: f.string_list("families"),
        categories: f.string_list("categories"),
        enabled_only: f.bool("enabled_only", false),
    };
    f.finish();
    filter
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

fn shopify(mut s: Section<'_, '_>) -> Option<TargetKind> {
    let shop = s
        .required_str("shop")
        .map(|shop| shop.to_ascii_lowercase())
        .filter(|shop| check_shop(&s, shop));
    let api_version = s
        .optional_str("api_version")
        .unwrap_or_else(|| DEFAULT_SHOPIFY_API_VERSION.to_string());
    let api_version_ok = is_api_version(&api_version);
    if !api_version_ok {
        let msg = format!(
            "invalid API version \"{api_version}\" (expected YYYY-MM, e.g. \"{DEFAULT_SHOPIFY_API_VERSION}\")"
        );
        s.invalid("api_version", msg);
    }
    let access_token = s.secret("access_token");
    s.finish();
    Some(TargetKind::Shopify {
        shop: shop?,
        api_version: Some(api_version).filter(|_| api_version_ok)?,
        access_token: access_token?,
    })
}

/// The shop is addressed by its permanent `*.myshopify.com` domain, not a custom domain,
/// because the Admin API is only served there.
fn check_shop(s: &Section<'_, '_>, shop: &str) -> bool {
    let Some(store) = shop.strip_suffix(SHOPIFY_SUFFIX) else {
        s.invalid("shop", "must end in .myshopify.com");
        return false;
    };
    let ok = !store.is_empty()
        && !store.starts_with('-')
        && store
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !ok {
        s.invalid(
            "shop",
            "must be a bare shop domain like \"example.myshopify.com\"",
        );
    }
    ok
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

fn magento(mut s: Section<'_, '_>) -> Option<TargetKind> {
    let base_url = s
        .required_str("base_url")
        .filter(|url| check_base_url(&s, url));
    let access_token = s.secret("access_token");
    s.finish();
    Some(TargetKind::Magento {
        base_url: base_url?,
        access_token: access_token?,
    })
}

fn check_base_url(s: &Section<'_, '_>, url: &str) -> bool {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let problem = match rest {
        None => Some("must start with http:// or https://"),
        Some(rest) if rest.is_empty() || rest.starts_with('/') => Some("has no host"),
        Some(_) if url.chars().any(|c| c.is_whitespace() || c.is_control()) => {
            Some("must not contain whitespace")
        }
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
