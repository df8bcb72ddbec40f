//! `[targets.magento]`: every key, its defaults, and the mistakes an operator makes.

use super::{SOURCE, TestEnv, errors, errors_with, load_with};
use crate::config::TargetKind;
use pimsync_connectors::magento::{DeletionPolicy, MagentoAuth, MagentoSettings};

fn settings(text: &str, env: &TestEnv) -> MagentoSettings {
    let config = load_with(text, env);
    match &config.targets[0].kind {
        TargetKind::Magento(settings) => (**settings).clone(),
        other => panic!("{other:?}"),
    }
}

fn target(body: &str) -> String {
    format!("{SOURCE}\n[[targets]]\nname = \"m\"\nkind = \"magento\"\n{body}")
}

#[test]
fn a_bearer_token_alone_gives_every_default() {
    let text =
        target("[targets.magento]\nbase_url = \"https://m.example.com\"\naccess_token = \"tok\"\n");
    let s = settings(&text, &TestEnv::default());
    let mut expected = MagentoSettings::new(
        "https://m.example.com",
        MagentoAuth::Bearer {
            access_token: "tok".into(),
        },
    );
    expected.website_ids = vec![1];
    assert_eq!(s, expected);
    assert_eq!(s.attribute_set_id, 4);
    assert!(s.msi);
    assert_eq!(s.source_code, "default");
    assert_eq!(s.deletion, DeletionPolicy::Disable);
    assert_eq!(s.visibility, 4);
    assert!(!format!("{s:?}").contains("tok"), "Debug hides the token");
}

#[test]
fn every_key_is_read() {
    let env = TestEnv::default()
        .var("CK", "consumer-key")
        .var("CS", "consumer-secret")
        .var("AT", "access-token")
        .var("ATS", "token-secret");
    let text = target(
        r#"[targets.mapping]
name = { attribute = "name", locale = "en_US" }
price = { attribute = "price", currency = "EUR" }
qty = "stock"
[targets.magento]
base_url = "https://m.example.com"
consumer_key = { env = "CK" }
consumer_secret = { env = "CS" }
access_token = { env = "AT" }
access_token_secret = { env = "ATS" }
attribute_set_id = 9
website_ids = [1, 2]
msi = false
source_code = "warehouse_1"
deletion = "delete"
visibility = 2
[targets.magento.store_views]
de_DE = "de"
fr_FR = "fr_ch"
[targets.magento.categories]
seating = 12
sale = 40
[targets.magento.custom_attributes]
material = "material"
care_instructions = { attribute = "care", locale = "en_US" }
"#,
    );
    let s = settings(&text, &env);
    let MagentoAuth::OAuth1(credentials) = &s.auth else {
        panic!("oauth")
    };
    assert_eq!(credentials.consumer_key, "consumer-key");
    assert_eq!(credentials.consumer_secret, "consumer-secret");
    assert_eq!(credentials.access_token, "access-token");
    assert_eq!(credentials.access_token_secret, "token-secret");
    assert_eq!(s.attribute_set_id, 9);
    assert_eq!(s.website_ids, [1, 2]);
    assert!(!s.msi);
    assert_eq!(s.source_code, "warehouse_1");
    assert_eq!(s.deletion, DeletionPolicy::Delete);
    assert_eq!(s.visibility, 2);
    assert_eq!(s.store_views["fr_FR"], "fr_ch");
    assert_eq!(s.categories["seating"], 12);
    assert_eq!(
        s.custom_attributes["care_instructions"].locale.as_deref(),
        Some("en_US")
    );
    let debug = format!("{s:?}");
    assert!(!debug.contains("consumer-secret") && !debug.contains("token-secret"));
}

#[test]
fn mistakes_are_reported_with_their_paths() {
    let text = target(
        r#"[targets.magento]
base_url = "https://m.example.com"
access_token = "t"
consumer_key = "ck"
attribute_set_id = 0
website_ids = [1, "2"]
deletion = "purge"
visibility = 5
source_code = ""
[targets.magento.store_views]
de_DE = "DE"
en_US = "all"
fr_FR = "fr"
fr_CH = "fr"
[targets.magento.categories]
seating = "12"
"#,
    );
    assert_eq!(
        errors(&text),
        [
            "targets[0].magento.consumer_secret: missing: OAuth 1.0a signing needs consumer_key, consumer_secret and access_token_secret (leave all three out for a Bearer token)",
            "targets[0].magento.access_token_secret: missing: OAuth 1.0a signing needs consumer_key, consumer_secret and access_token_secret (leave all three out for a Bearer token)",
            "targets[0].magento.attribute_set_id: must be a Magento attribute set id (1 or more)",
            "targets[0].magento.website_ids[1]: expected an integer, found a string",
            r#"targets[0].magento.deletion: unknown policy "purge" (expected "disable" or "delete")"#,
            "targets[0].magento.visibility: must be 1 (not visible), 2 (catalog), 3 (search) or 4 (catalog, search)",
            "targets[0].magento.source_code: must not be empty",
            r#"targets[0].magento.store_views.de_DE: invalid store view code "DE" (lowercase letters, digits and '_', starting with a letter)"#,
            r#"targets[0].magento.store_views.en_US: "all" is the global scope, not a store view"#,
            r#"targets[0].magento.store_views.fr_FR: store view "fr" is already used for locale fr_CH"#,
            "targets[0].magento.categories.seating: expected an integer, found a string",
        ]
    );
}

#[test]
fn the_mapping_names_magento_fields() {
    let text = target(
        "[targets.mapping]\ntitle = \"name\"\nname = \"name\"\n[targets.magento]\nbase_url = \"https://m.example.com\"\naccess_token = \"t\"\n",
    );
    assert_eq!(
        errors(&text),
        [
            "targets[0].mapping.title: unknown field (expected one of: name, description, short_description, meta_title, meta_keyword, meta_description, price, special_price, cost, weight, status, qty)"
        ]
    );
}

#[test]
fn missing_credentials_and_unknown_keys() {
    let text = target("[targets.magento]\nbase_url = \"https://m.example.com\"\ntoken = \"t\"\n");
    let found = errors(&text);
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(
        found[0],
        "targets[0].magento.access_token: missing required key"
    );
    assert!(found[1].starts_with("targets[0].magento.token: unknown key (expected one of: base_url, access_token, consumer_key"), "{found:?}");
    let env = TestEnv::default();
    let text = target(
        "[targets.magento]\nbase_url = \"https://m.example.com\"\naccess_token = { env = \"NOPE\" }\n",
    );
    assert_eq!(
        errors_with(&text, &env),
        ["targets[0].magento.access_token: environment variable NOPE is not set"]
    );
}
