use std::path::Path;
use std::time::Duration;

use super::{TestEnv, load_with};
use crate::config::{SourceFormat, TargetKind};

const EXAMPLE: &str = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml.example"));

/// Everything the example refers to, as systemd and the operator would provide it.
fn example_env() -> TestEnv {
    TestEnv::default()
        .var("AKENEO_SECRET", "akeneo-secret")
        .var("AKENEO_EVENTS_SECONDARY_SECRET", "aep-secondary")
        .var("AKENEO_API_SECRET", "akeneo-api-secret")
        .var(
            "CATALOG_WEBHOOK_SECRET",
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        )
        .var("SHOPIFY_EU_TOKEN", "shpat_example")
        .var("CATALOG_SERVICE_TOKEN", "catalog-token")
        .var("MAGENTO_TOKEN", "magento-token")
        .var("MAGENTO_CONSUMER_KEY", "magento-consumer-key")
        .var(
            "AGENCY_WEBHOOK_SECRET",
            "whsec_cGltc3luYy1leGFtcGxlLWFnZW5jeS1zZWNyZXQ=",
        )
        .var("CREDENTIALS_DIRECTORY", "/run/credentials/pimsync.service")
        .file(
            "/run/credentials/pimsync.service/akeneo-event-platform",
            "aep-primary\n",
        )
        .file(
            "/run/credentials/pimsync.service/admin-token",
            "example-admin-token-0123456789\n",
        )
        .file("/etc/pimsync/secrets/erp-webhook", "erp-secret\n")
        .file(
            "/run/credentials/pimsync.service/akeneo-api-password",
            "akeneo-api-password\n",
        )
        .file(
            "/run/credentials/pimsync.service/magento-consumer-secret",
            "magento-consumer-secret\n",
        )
        .file(
            "/run/credentials/pimsync.service/magento-token-secret",
            "magento-token-secret\n",
        )
        .file(
            "/run/credentials/pimsync.service/agency-api-token",
            "Bearer agency-token\n",
        )
}

#[test]
fn example_config_parses() {
    let config = load_with(EXAMPLE, &example_env());
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.server.body_limit, 1 << 20);
    assert_eq!(config.store.path, Path::new("/var/lib/pimsync/pimsync.db"));
    assert_eq!(config.store.inbox_retention, Duration::from_secs(7 * 86400));

    let formats: Vec<_> = config.sources.iter().map(|s| s.format.name()).collect();
    assert_eq!(
        formats,
        [
            "akeneo",
            "akeneo-event-platform",
            "standard-webhooks",
            "hmac"
        ]
    );
    let SourceFormat::AkeneoEventPlatform { primary, secondary } = &config.sources[1].format else {
        panic!("akeneo-event-platform")
    };
    assert_eq!(primary.expose(), b"aep-primary");
    assert!(secondary.is_some());
    let api = config.sources[1].api.as_ref().expect("[sources.api]");
    assert_eq!(api.settings.base_url, "https://pim.example.com");
    assert_eq!(api.settings.secret, "akeneo-api-secret");
    assert_eq!(api.settings.password, "akeneo-api-password");
    assert_eq!((api.fetch_batch, api.delete_missing), (100, false));
    assert!(config.sources.iter().filter(|s| s.api.is_some()).count() == 1);

    let kinds: Vec<_> = config.targets.iter().map(|t| t.kind.name()).collect();
    assert_eq!(kinds, ["log", "http", "shopify", "magento", "webhook"]);
    assert!(
        matches!(&config.targets[0].kind, TargetKind::Log { path: Some(p) } if p == Path::new("/var/log/pimsync/audit.jsonl"))
    );
    // The example's [targets.delivery] shows the defaults.
    assert_eq!(
        config.targets[0].delivery,
        crate::config::DeliveryConfig::default()
    );
    assert!(matches!(
        &config.targets[1].kind,
        TargetKind::Http { base_url, bearer_token: Some(_) } if base_url == "https://catalog.internal.example.com/api"
    ));
    assert!(config.targets[2].filter.enabled_only);
    let TargetKind::Magento(magento) = &config.targets[3].kind else {
        panic!("magento")
    };
    assert!(matches!(
        &magento.auth,
        pimsync_connectors::magento::MagentoAuth::OAuth1(c) if c.access_token_secret == "magento-token-secret"
    ));
    assert_eq!(magento.store_views.len(), 2);
    assert_eq!(config.targets[3].mapping.fields.len(), 5);
    let agency = &config.targets[4];
    let TargetKind::Webhook(webhook) = &agency.kind else {
        panic!("webhook")
    };
    assert!(agency.keeps_history());
    assert_eq!(webhook.settings.keys.len(), 1);
    assert_eq!(webhook.settings.headers.len(), 2);
    assert_eq!(webhook.settings.watch.len(), 2);
    assert_eq!(agency.mapping.fields.len(), 2);
    assert_eq!(config.admin.unwrap().listen.to_string(), "127.0.0.1:9090");
    let names: Vec<_> = config.schedules.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["nightly-shop", "weekly-reconcile"]);
}

#[test]
fn example_without_the_environment_names_each_missing_secret() {
    let errors = super::errors(EXAMPLE);
    let paths: Vec<_> = errors
        .iter()
        .filter_map(|e| e.split_once(':').map(|(path, _)| path))
        .collect();
    assert_eq!(
        paths,
        [
            "sources[0].secret",
            "sources[1].primary_secret",
            "sources[1].secondary_secret",
            "sources[1].api.secret",
            "sources[1].api.password",
            "sources[2].secrets[0]",
            "sources[3].secret",
            "targets[1].http.bearer_token",
            "targets[2].shopify.access_token",
            "targets[3].magento.access_token",
            "targets[3].magento.consumer_key",
            "targets[3].magento.consumer_secret",
            "targets[3].magento.access_token_secret",
            "targets[4].webhook.secrets[0]",
            "targets[4].webhook.headers.Authorization",
            "admin.token",
        ]
    );
}
