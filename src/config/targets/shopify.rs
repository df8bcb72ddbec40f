//! `[targets.shopify]`: the shop, its credentials and what the connector sends.

use pimsync_connectors::shopify::{
    DeletionPolicy, MAX_OPTIONS, MetafieldSpec, OptionAxis, ShopifyAuth, ShopifySettings,
};

use super::super::reader::Section;
use super::super::{FieldSource, Mapping, Secret, TargetKind};
use super::{DEFAULT_SHOPIFY_API_VERSION, SHOPIFY_SUFFIX, is_api_version};

pub(super) fn read(mut s: Section<'_, '_>, mapping: Option<&Mapping>) -> Option<TargetKind> {
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
    let auth = read_auth(&mut s);
    let location_id = s.optional_str("location_id");
    let stock_mapped = mapping.is_some_and(|m| m.get("stock").is_some());
    if stock_mapped && location_id.is_none() {
        s.invalid(
            "location_id",
            "required when the mapping has a stock field (the location whose quantity is set)",
        );
    }
    let deletion = s
        .optional_str("deletion")
        .map_or(Some(DeletionPolicy::default()), |name| {
            let policy = DeletionPolicy::parse(&name);
            if policy.is_none() {
                let expected = DeletionPolicy::NAMES.join(", ");
                s.invalid(
                    "deletion",
                    format!("unknown policy \"{name}\" (expected one of: {expected})"),
                );
            }
            policy
        });
    let publications = s.string_list("publications");
    let identifier_namespace = s
        .optional_str("identifier_namespace")
        .unwrap_or_else(|| "pim".into());
    let identifier_key = s
        .optional_str("identifier_key")
        .unwrap_or_else(|| "key".into());
    // Shopify's limits on metafield namespaces and keys.
    if !(3..=255).contains(&identifier_namespace.len()) {
        s.invalid("identifier_namespace", "must be 3 to 255 characters");
    }
    if !(2..=64).contains(&identifier_key.len()) {
        s.invalid("identifier_key", "must be 2 to 64 characters");
    }
    let mut ok = true;
    let metafields = read_list(&mut s, "metafields", &mut ok, |m| {
        let namespace = m.required_str("namespace");
        let key = m.required_str("key");
        let kind = m.required_str("type");
        let source = source(m);
        Some(MetafieldSpec {
            namespace: namespace?,
            key: key?,
            kind: kind?,
            source: source?,
        })
    });
    if s.array_len("options").is_some_and(|n| n > MAX_OPTIONS) {
        s.invalid(
            "options",
            format!("at most {MAX_OPTIONS} option axes (Shopify's limit)"),
        );
        ok = false;
    }
    let options = read_list(&mut s, "options", &mut ok, |o| {
        let name = o.required_str("name");
        let source = source(o);
        Some(OptionAxis {
            name: name?,
            source: source?,
        })
    });
    s.finish();
    let settings = ShopifySettings {
        shop: shop?,
        api_version: Some(api_version).filter(|_| api_version_ok)?,
        auth: auth?,
        location_id,
        deletion: deletion?,
        publications,
        identifier_namespace,
        identifier_key,
        metafields,
        options,
        endpoint_override: None,
    };
    ok.then(|| TargetKind::Shopify(Box::new(settings)))
}

/// Either a static `access_token`, or `client_id` + `client_secret` for the
/// client-credentials grant; exactly one of the two.
fn read_auth(s: &mut Section<'_, '_>) -> Option<ShopifyAuth> {
    let has_token = s.has("access_token");
    let has_client = s.has("client_id") || s.has("client_secret");
    let token = s.optional_secret("access_token");
    let client_id = s.optional_str("client_id");
    let client_secret = s.optional_secret("client_secret");
    match (has_token, has_client) {
        (true, true) => {
            s.invalid(
                "access_token",
                "set either access_token or client_id + client_secret, not both",
            );
            None
        }
        (true, false) => text(s, "access_token", token?).map(ShopifyAuth::AccessToken),
        (false, true) => {
            if client_id.is_none() {
                s.invalid("client_id", "missing required key (with client_secret)");
            }
            if client_secret.is_none() {
                s.invalid("client_secret", "missing required key (with client_id)");
            }
            let client_secret = text(s, "client_secret", client_secret?);
            Some(ShopifyAuth::ClientCredentials {
                client_id: client_id?,
                client_secret: client_secret?,
            })
        }
        (false, false) => {
            s.invalid(
                "access_token",
                "missing: set access_token, or client_id + client_secret",
            );
            None
        }
    }
}

/// The connector sends secrets in headers and form bodies: they must be text.
fn text(s: &Section<'_, '_>, key: &str, secret: Secret) -> Option<String> {
    let text = String::from_utf8(secret.expose().to_vec()).ok();
    if text.is_none() {
        s.invalid(key, "must be UTF-8 text");
    }
    text
}

fn source(t: &mut Section<'_, '_>) -> Option<FieldSource> {
    let attribute = t.required_str("attribute");
    Some(FieldSource {
        attribute: attribute?,
        locale: t.optional_str("locale"),
        scope: t.optional_str("scope"),
        currency: t.optional_str("currency"),
    })
}

fn read_list<T>(
    s: &mut Section<'_, '_>,
    key: &'static str,
    ok: &mut bool,
    mut read: impl FnMut(&mut Section<'_, '_>) -> Option<T>,
) -> Vec<T> {
    let mut out = Vec::new();
    for mut table in s.tables(key) {
        match read(&mut table) {
            Some(item) => out.push(item),
            None => *ok = false,
        }
        table.finish();
    }
    out
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
