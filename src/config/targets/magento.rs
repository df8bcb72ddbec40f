//! `[targets.magento]`: a Magento Open Source / Adobe Commerce store, read into the
//! connector's own settings type so the daemon hands it over unchanged.

use std::collections::BTreeMap;

use pimsync_connectors::magento::{
    DEFAULT_ATTRIBUTE_SET_ID, DEFAULT_SOURCE_CODE, DeletionPolicy, MagentoAuth, MagentoSettings,
    OAuthCredentials, VISIBILITY_CATALOG_SEARCH,
};

use super::super::reader::Section;
use super::super::{Secret, TargetKind};
use super::{check_base_url, read_mapping};

pub(super) fn magento(mut s: Section<'_, '_>) -> Option<TargetKind> {
    let base_url = s
        .required_str("base_url")
        .filter(|url| check_base_url(&s, url));
    let auth = read_auth(&mut s);
    let attribute_set_id = s.integer("attribute_set_id", DEFAULT_ATTRIBUTE_SET_ID as u64);
    if attribute_set_id == 0 {
        s.invalid(
            "attribute_set_id",
            "must be a Magento attribute set id (1 or more)",
        );
    }
    let website_ids = s.integer_list("website_ids", &[1]);
    let msi = s.bool("msi", true);
    let source_code = s
        .optional_str("source_code")
        .unwrap_or_else(|| DEFAULT_SOURCE_CODE.to_owned());
    if source_code.trim().is_empty() {
        s.invalid("source_code", "must not be empty");
    }
    let deletion = match s.optional_str("deletion").as_deref() {
        None | Some("disable") => Some(DeletionPolicy::Disable),
        Some("delete") => Some(DeletionPolicy::Delete),
        Some(other) => {
            let msg = format!("unknown policy \"{other}\" (expected \"disable\" or \"delete\")");
            s.invalid("deletion", msg);
            None
        }
    };
    let visibility = s.integer("visibility", VISIBILITY_CATALOG_SEARCH as u64);
    let visibility_ok = (1..=4).contains(&visibility);
    if !visibility_ok {
        s.invalid(
            "visibility",
            "must be 1 (not visible), 2 (catalog), 3 (search) or 4 (catalog, search)",
        );
    }
    let store_views = s.subsection("store_views").map(read_store_views);
    let categories = s
        .subsection("categories")
        .map(|c| {
            c.integer_entries()
                .into_iter()
                .map(|(k, id)| (k, id as i64))
                .collect()
        })
        .unwrap_or_default();
    let custom_attributes = s
        .subsection("custom_attributes")
        .map(|c| read_mapping(c).fields)
        .unwrap_or_default();
    s.finish();

    let mut settings = MagentoSettings::new(base_url?, auth?);
    settings.attribute_set_id = Some(attribute_set_id as i64).filter(|&id| id > 0)?;
    settings.website_ids = website_ids.into_iter().map(|id| id as i64).collect();
    settings.store_views = store_views.unwrap_or(Some(BTreeMap::new()))?;
    settings.msi = msi;
    settings.source_code = Some(source_code).filter(|c| !c.trim().is_empty())?;
    settings.deletion = deletion?;
    settings.visibility = Some(visibility as i64).filter(|_| visibility_ok)?;
    settings.categories = categories;
    settings.custom_attributes = custom_attributes;
    Some(TargetKind::Magento(Box::new(settings)))
}

/// `access_token` alone is sent as a Bearer token; with `consumer_key`, `consumer_secret`
/// and `access_token_secret` every request is OAuth 1.0a signed instead.
fn read_auth(s: &mut Section<'_, '_>) -> Option<MagentoAuth> {
    let access_token = s
        .secret("access_token")
        .and_then(|t| text(s, "access_token", t));
    let mut oauth = Vec::new();
    for key in ["consumer_key", "consumer_secret", "access_token_secret"] {
        let present = s.has(key);
        let value = s.optional_secret(key).and_then(|v| text(s, key, v));
        oauth.push((key, present, value));
    }
    let given: Vec<_> = oauth.iter().filter(|(_, present, _)| *present).collect();
    if !given.is_empty() && given.len() < oauth.len() {
        for (key, present, _) in &oauth {
            if !present {
                s.invalid(
                    key,
                    "missing: OAuth 1.0a signing needs consumer_key, consumer_secret and access_token_secret (leave all three out for a Bearer token)",
                );
            }
        }
        return None;
    }
    let access_token = access_token?;
    if given.is_empty() {
        return Some(MagentoAuth::Bearer { access_token });
    }
    let mut values = oauth.into_iter().map(|(_, _, value)| value);
    let (Some(Some(consumer_key)), Some(Some(consumer_secret)), Some(Some(access_token_secret))) =
        (values.next(), values.next(), values.next())
    else {
        return None;
    };
    Some(MagentoAuth::OAuth1(OAuthCredentials {
        consumer_key,
        consumer_secret,
        access_token,
        access_token_secret,
    }))
}

/// Credentials go into HTTP headers, so they must be text.
fn text(s: &Section<'_, '_>, key: &str, secret: Secret) -> Option<String> {
    let text = String::from_utf8(secret.expose().to_vec()).ok();
    if text.is_none() {
        s.invalid(key, "must be UTF-8 text");
    }
    text
}

/// `locale = "store code"`: which store view shows which PIM locale.
fn read_store_views(section: Section<'_, '_>) -> Option<BTreeMap<String, String>> {
    let ctx = section.ctx();
    let mut out = Some(BTreeMap::new());
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for (locale, code) in section.string_entries() {
        let problem = if !is_store_code(&code.value) {
            Some(format!(
                "invalid store view code \"{}\" (lowercase letters, digits and '_', starting with a letter)",
                code.value
            ))
        } else if code.value == "all" {
            Some("\"all\" is the global scope, not a store view".to_owned())
        } else if let Some(other) = seen.get(&code.value) {
            Some(format!(
                "store view \"{}\" is already used for locale {other}",
                code.value
            ))
        } else {
            None
        };
        match problem {
            Some(message) => {
                ctx.error(code.pos, code.path, message);
                out = None;
            }
            None => {
                seen.insert(code.value.clone(), locale.clone());
                if let Some(map) = out.as_mut() {
                    map.insert(locale, code.value);
                }
            }
        }
    }
    out
}

/// Magento store codes: a letter, then lowercase letters, digits and underscores.
fn is_store_code(code: &str) -> bool {
    code.starts_with(|c: char| c.is_ascii_lowercase())
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}
