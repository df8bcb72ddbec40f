//! `[targets.shopify]` beyond shop and API version: credentials, stock location,
//! deletion, publications, identifier, metafields, option axes, mapping fields.

use pimsync_connectors::shopify::{DeletionPolicy, ShopifyAuth};

use super::{SOURCE, TestEnv, errors, load_with};
use crate::config::TargetKind;

fn target(shopify: &str, mapping: &str) -> String {
    format!(
        "{SOURCE}\n[[targets]]\nname = \"shop\"\nkind = \"shopify\"\n[targets.shopify]\nshop = \"demo.myshopify.com\"\n{shopify}\n[targets.mapping]\n{mapping}\n"
    )
}

#[test]
fn every_shopify_key() {
    let env = TestEnv::default().var("SECRET", "s3cret");
    let text = target(
        r#"client_id = "cid"
client_secret = { env = "SECRET" }
location_id = "gid://shopify/Location/1"
deletion = "delete"
publications = ["gid://shopify/Publication/1", "2"]
identifier_namespace = "akeneo"
identifier_key = "identifier"
[[targets.shopify.metafields]]
namespace = "custom"
key = "material"
type = "single_line_text_field"
attribute = "material"
locale = "en_US"
[[targets.shopify.options]]
name = "Color"
attribute = "color"
locale = "en_US"
[[targets.shopify.options]]
name = "Size"
attribute = "size""#,
        r#"title = "name"
stock = "stock""#,
    );
    let config = load_with(&text, &env);
    let TargetKind::Shopify(s) = &config.targets[0].kind else {
        panic!("shopify")
    };
    assert_eq!(
        s.auth,
        ShopifyAuth::ClientCredentials {
            client_id: "cid".into(),
            client_secret: "s3cret".into()
        }
    );
    assert!(!format!("{s:?}").contains("s3cret"), "Debug redacts");
    assert_eq!(s.location_id.as_deref(), Some("gid://shopify/Location/1"));
    assert_eq!(s.deletion, DeletionPolicy::Delete);
    assert_eq!(s.publications, ["gid://shopify/Publication/1", "2"]);
    assert_eq!(s.identifier_namespace, "akeneo");
    assert_eq!(s.identifier_key, "identifier");
    assert_eq!(s.metafields[0].kind, "single_line_text_field");
    assert_eq!(s.metafields[0].source.locale.as_deref(), Some("en_US"));
    assert_eq!(s.options.len(), 2);
    assert_eq!(s.options[1].source.attribute, "size");
    assert_eq!(s.endpoint_override, None);
}

#[test]
fn shopify_mistakes_are_reported_with_their_paths() {
    let text = target(
        "access_token = \"t\"\nclient_id = \"c\"\nclient_secret = \"s\"\ndeletion = \"burn\"",
        "stock = \"stock\"",
    );
    let found = errors(&text);
    for expected in [
        "targets[0].shopify.access_token: set either access_token or client_id + client_secret, not both",
        r#"targets[0].shopify.deletion: unknown policy "burn" (expected one of: delete, archive, draft)"#,
        "targets[0].shopify.location_id: required when the mapping has a stock field (the location whose quantity is set)",
    ] {
        assert!(
            found.contains(&expected.to_string()),
            "{expected}\n{found:?}"
        );
    }
    let found = errors(&target("access_token = \"t\"", "colour = \"c\""));
    assert!(
        found[0].starts_with("targets[0].mapping.colour: unknown field (expected one of: title,"),
        "{found:?}"
    );
    assert_eq!(
        errors(&target("", "")),
        [
            "targets[0].shopify.access_token: missing: set access_token, or client_id + client_secret"
        ]
    );
    assert_eq!(
        errors(&target("client_id = \"c\"", "")),
        ["targets[0].shopify.client_secret: missing required key (with client_id)"]
    );
    let axes = "access_token = \"t\"\n".to_string()
        + &"[[targets.shopify.options]]\nname = \"A\"\nattribute = \"a\"\n".repeat(4);
    assert_eq!(
        errors(&target(&axes, "")),
        ["targets[0].shopify.options: at most 3 option axes (Shopify's limit)"]
    );
    let metafield = "access_token = \"t\"\n[[targets.shopify.metafields]]\nnamespace = \"c\"\nkey = \"k\"\nattribute = \"a\"\nvalue = 1";
    let found = errors(&target(metafield, ""));
    assert!(
        found.contains(&"targets[0].shopify.metafields[0].type: missing required key".to_string()),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|e| e.starts_with("targets[0].shopify.metafields[0].value:")),
        "{found:?}"
    );
}
