use std::path::Path;

use super::{SOURCE, TestEnv, errors, errors_with, load, load_with};
use crate::config::TargetKind;
use pimsync_connectors::shopify::{DeletionPolicy, ShopifyAuth};

#[test]
fn log_target_defaults_to_stdout_and_resolves_its_path() {
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "stdout"
kind = "log"

[[targets]]
name = "file"
kind = "log"
log = {{ path = "logs/out.jsonl" }}
"#
    );
    let config = load(&text);
    assert!(matches!(
        config.targets[0].kind,
        TargetKind::Log { path: None }
    ));
    let TargetKind::Log { path: Some(path) } = &config.targets[1].kind else {
        panic!("log with path")
    };
    assert_eq!(path, Path::new("/etc/pimsync/logs/out.jsonl"));
    let filter = &config.targets[0].filter;
    assert!(filter.families.is_empty() && filter.categories.is_empty() && !filter.enabled_only);
}

#[test]
fn shopify_and_magento_targets_with_filters() {
    let env = TestEnv::default().var("TOKEN", "t");
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "shop"
kind = "shopify"
[targets.filter]
families = ["shoes", "hats"]
categories = ["eu"]
enabled_only = true
[targets.shopify]
shop = "Example-EU.myshopify.com"
access_token = {{ env = "TOKEN" }}

[[targets]]
name = "magento"
kind = "magento"
[targets.magento]
base_url = "http://localhost:8081"
access_token = "m"
"#
    );
    let config = load_with(&text, &env);
    let shop = &config.targets[0];
    assert_eq!(shop.filter.families, ["shoes", "hats"]);
    assert_eq!(shop.filter.categories, ["eu"]);
    assert!(shop.filter.enabled_only);
    let TargetKind::Shopify(shopify) = &shop.kind else {
        panic!("shopify")
    };
    assert_eq!(shopify.shop, "example-eu.myshopify.com");
    assert_eq!(shopify.api_version, "2026-04");
    assert_eq!(shopify.auth, ShopifyAuth::AccessToken("t".into()));
    assert_eq!(shopify.deletion, DeletionPolicy::Archive);
    assert_eq!(
        (
            shopify.identifier_namespace.as_str(),
            shopify.identifier_key.as_str()
        ),
        ("pim", "key")
    );
    let TargetKind::Magento(magento) = &config.targets[1].kind else {
        panic!("magento")
    };
    assert_eq!(magento.base_url, "http://localhost:8081");
    assert_eq!(
        magento.auth,
        pimsync_connectors::magento::MagentoAuth::Bearer {
            access_token: "m".into()
        }
    );
}

fn shopify(shop: &str, api_version: &str) -> String {
    format!(
        r#"{SOURCE}
[[targets]]
name = "shop"
kind = "shopify"
[targets.shopify]
shop = "{shop}"
api_version = "{api_version}"
access_token = "t"
"#
    )
}

#[test]
fn shopify_shop_and_api_version() {
    assert_eq!(
        errors(&shopify("shop.example.com", "2026-04")),
        ["targets[0].shopify.shop: must end in .myshopify.com"]
    );
    assert_eq!(
        errors(&shopify("https://shop.myshopify.com", "2026-04")),
        [r#"targets[0].shopify.shop: must be a bare shop domain like "example.myshopify.com""#]
    );
    assert_eq!(
        errors(&shopify(".myshopify.com", "2026-04")),
        [r#"targets[0].shopify.shop: must be a bare shop domain like "example.myshopify.com""#]
    );
    for bad in ["2026-4", "2026-13", "unstable", "26-04-01", "2026_04"] {
        assert_eq!(
            errors(&shopify("a.myshopify.com", bad)),
            [format!(
                r#"targets[0].shopify.api_version: invalid API version "{bad}" (expected YYYY-MM, e.g. "2026-04")"#
            )],
        );
    }
    let config = load(&shopify("a.myshopify.com", "2026-07"));
    assert!(
        matches!(&config.targets[0].kind, TargetKind::Shopify(s) if s.api_version == "2026-07")
    );
}

#[test]
fn platform_tables_must_match_kind() {
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "a"
kind = "log"
[targets.shopify]
shop = "a.myshopify.com"

[[targets]]
name = "b"
kind = "shopify"

[[targets]]
name = "c"
kind = "magento"
[targets.magento]
base_url = "magento.example.com"
"#
    );
    assert_eq!(
        errors(&text),
        [
            r#"targets[0].shopify: only allowed when kind = "shopify" (this target has kind = "log")"#,
            r#"targets[1].shopify: missing [targets.shopify] table (required for kind = "shopify")"#,
            // Missing keys are reported at the table's header.
            "targets[2].magento.access_token: missing required key",
            "targets[2].magento.base_url: must start with http:// or https://",
        ]
    );
}

#[test]
fn unknown_kind_lists_the_supported_ones() {
    let text = format!("{SOURCE}\n[[targets]]\nname = \"x\"\nkind = \"woocommerce\"\n");
    assert_eq!(
        errors(&text),
        [
            r#"targets[0].kind: unknown kind "woocommerce" (expected one of: log, shopify, magento, http, odoo, rest, webhook)"#
        ]
    );
    let text = format!("{SOURCE}\n[[targets]]\nname = \"x\"\n");
    assert_eq!(errors(&text), ["targets[0].kind: missing required key"]);
}

#[test]
fn unknown_keys_in_targets_filters_and_platform_tables() {
    let env = TestEnv::default().var("TOKEN", "t");
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "shop"
kind = "shopify"
retries = 3
[targets.filter]
family = ["shoes"]
[targets.shopify]
shop = "a.myshopify.com"
access_token = {{ env = "TOKEN", fallback = "x" }}
location = "eu"
"#
    );
    assert_eq!(
        errors_with(&text, &env),
        [
            "targets[0].retries: unknown key (expected one of: name, kind, filter, mapping, delivery, shopify)",
            "targets[0].filter.family: unknown key (expected one of: families, categories, enabled_only, changed)",
            "targets[0].shopify.access_token.fallback: unknown key (expected one of: env, file, credential)",
            "targets[0].shopify.location: unknown key (expected one of: shop, api_version, access_token, client_id, client_secret, location_id, deletion, publications, identifier_namespace, identifier_key, metafields, options)",
        ]
    );
}

#[test]
fn filter_value_types() {
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "x"
kind = "log"
filter = {{ families = "shoes", categories = ["a", 2], enabled_only = "yes" }}
"#
    );
    assert_eq!(
        errors(&text),
        [
            "targets[0].filter.families: expected an array of strings, found a string",
            "targets[0].filter.categories[1]: expected a string, found an integer",
            "targets[0].filter.enabled_only: expected true or false, found a string",
        ]
    );
}

#[test]
fn duplicate_target_names() {
    let target = "[[targets]]\nname = \"dup\"\nkind = \"log\"\n";
    let text = format!("{SOURCE}\n{target}{target}");
    assert_eq!(
        errors(&text),
        [r#"targets[1].name: duplicate target name "dup" (also used by targets[0])"#]
    );
}

#[test]
fn magento_base_url_needs_a_host() {
    let text = format!(
        "{SOURCE}\n[[targets]]\nname = \"m\"\nkind = \"magento\"\nmagento = {{ base_url = \"https:///rest\", access_token = \"t\" }}\n"
    );
    assert_eq!(errors(&text), ["targets[0].magento.base_url: has no host"]);
}

#[test]
fn mapping_accepts_shorthand_and_full_sources() {
    let env = TestEnv::default().var("TOKEN", "t");
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "shop"
kind = "shopify"
[targets.shopify]
shop = "demo.myshopify.com"
access_token = {{ env = "TOKEN" }}
[targets.mapping]
title = "name"
descriptionHtml = {{ attribute = "description", locale = "en_US", scope = "ecommerce" }}
price = {{ attribute = "price", currency = "EUR" }}
"#
    );
    let config = load_with(&text, &env);
    let mapping = &config.targets[0].mapping;
    assert_eq!(mapping.fields["title"].attribute, "name");
    assert_eq!(
        mapping.fields["descriptionHtml"].scope.as_deref(),
        Some("ecommerce")
    );
    assert_eq!(mapping.fields["price"].currency.as_deref(), Some("EUR"));
}

#[test]
fn mapping_mistakes_are_reported_with_their_paths() {
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "preview"
kind = "log"
[targets.mapping]
title = 7
vendor = {{ locale = "en_US" }}
"#
    );
    let found = errors(&text);
    assert!(
        found.contains(&r#"targets[0].mapping.title: expected an attribute name or { attribute = "…", locale = "…", scope = "…", currency = "…" }, found an integer"#.to_string()),
        "{found:?}"
    );
    assert!(
        found.contains(&"targets[0].mapping.vendor.attribute: missing required key".to_string()),
        "{found:?}"
    );
    let text = format!(
        "{SOURCE}\n[[targets]]\nname = \"preview\"\nkind = \"log\"\n[targets.mapping]\ntitle = \"name\"\n"
    );
    assert_eq!(
        errors(&text),
        [r#"targets[0].mapping.title: kind = "log" sends the whole product and takes no mapping"#]
    );
}

#[test]
fn delivery_settings_have_defaults_and_bounds() {
    let text = format!("{SOURCE}\n[[targets]]\nname = \"t\"\nkind = \"log\"\n");
    assert_eq!(
        load(&text).targets[0].delivery,
        crate::config::DeliveryConfig::default()
    );
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "t"
kind = "http"
http = {{ base_url = "http://127.0.0.1:9000" }}
[targets.delivery]
concurrency = 2
rate_limit = 50
burst = 5
max_attempts = 3
retry_base = "1s"
retry_cap = "10s"
lease_timeout = "1m"
request_timeout = "5s"
min_interval = "250ms"
"#
    );
    let config = load(&text);
    let d = &config.targets[0].delivery;
    assert_eq!(d.min_interval, std::time::Duration::from_millis(250));
    assert_eq!(
        (d.concurrency, d.rate_limit, d.burst, d.max_attempts),
        (2, 50.0, 5, 3)
    );
    assert_eq!(d.retry_cap, std::time::Duration::from_secs(10));
    assert!(matches!(config.targets[0].kind, TargetKind::Http { .. }));
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "t"
kind = "log"
[targets.delivery]
concurrency = 0
retry_base = "10s"
retry_cap = "5s"
request_timeout = "10m"
min_interval = "2d"
"#
    );
    assert_eq!(
        errors(&text),
        [
            "targets[0].delivery.concurrency: must be between 1 and 1024",
            "targets[0].delivery.retry_cap: must be at least retry_base",
            "targets[0].delivery.request_timeout: must be shorter than lease_timeout, or a slow apply would be taken twice",
            "targets[0].delivery.min_interval: must be at most 1 day",
        ]
    );
}

#[test]
fn erp_targets_parse_with_key_paths() {
    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "odoo"
kind = "odoo"
[targets.odoo]
base_url = "https://odoo.example.com"
database = "prod"
api_key = "odoo-key"
on_delete = "unlink"
categories = [{{ name = "Chairs", id = 12 }}]
[targets.mapping]
name = "title"
x_material = "material"

[[targets]]
name = "netsuite"
kind = "rest"
[targets.rest]
base_url = "https://123.suitetalk.api.netsuite.com/services/rest"
idempotency_header = "X-NetSuite-Idempotency-Key"
[targets.rest.auth]
type = "oauth2"
token_url = "https://123.suitetalk.api.netsuite.com/services/rest/auth/oauth2/v1/token"
client_id = "app"
client_secret = "s3cret"
[targets.rest.upsert]
method = "PUT"
path = "/record/v1/inventoryItem/eid:{{key}}"
body = '{{"displayName": "{{{{name}}}}"}}'
success = [200, 204]
[targets.mapping]
name = "title"
"#
    );
    let config = load(&text);
    let TargetKind::Odoo(odoo) = &config.targets[0].kind else {
        panic!("odoo")
    };
    assert_eq!(odoo.api_key, "odoo-key");
    assert_eq!(odoo.database.as_deref(), Some("prod"));
    assert_eq!(odoo.categories["Chairs"], 12);
    let TargetKind::Rest(rest) = &config.targets[1].kind else {
        panic!("rest")
    };
    assert_eq!(rest.upsert.success, [200, 204]);
    assert_eq!(
        rest.idempotency_header.as_deref(),
        Some("X-NetSuite-Idempotency-Key")
    );

    let text = format!(
        r#"{SOURCE}
[[targets]]
name = "odoo"
kind = "odoo"
odoo = {{ base_url = "https://odoo", api_key = "k", model = "product.variant" }}
[targets.mapping]
colour = "colour"
default_code = "sku"

[[targets]]
name = "erp"
kind = "rest"
[targets.rest]
base_url = "https://erp"
auth = {{ type = "magic" }}
upsert = {{ method = "PUT", path = "/items/{{key}}", body = '{{"c": "{{{{colour}}}}"}}' }}
"#
    );
    let found = errors(&text);
    for expected in [
        "targets[0].odoo.model: unknown model \"product.variant\" (expected one of: product.template, product.product)",
        "targets[1].rest.auth.type: unknown auth type \"magic\" (expected one of: none, bearer, basic, oauth2, session)",
    ] {
        assert!(found.contains(&expected.to_string()), "{found:?}");
    }
}
