//! Builds each target's connector from its config.

use std::fmt::Display;
use std::sync::Arc;

use pimsync_connectors::Connector;
use pimsync_connectors::erp::{odoo, rest};
use pimsync_connectors::http_target::HttpTarget;
use pimsync_connectors::log::LogConnector;
use pimsync_connectors::{magento, shopify};

use crate::config::{TargetConfig, TargetKind};

pub fn build(target: &TargetConfig) -> Result<Arc<dyn Connector>, String> {
    let timeout = target.delivery.request_timeout;
    let mapping = || target.mapping.clone();
    match &target.kind {
        TargetKind::Log { path } => shared(LogConnector::open(path.as_ref())),
        TargetKind::Http {
            base_url,
            bearer_token,
        } => {
            let token = bearer_token
                .as_ref()
                .map(|t| String::from_utf8_lossy(t.expose()).into_owned());
            shared(HttpTarget::new(base_url, token, timeout))
        }
        TargetKind::Shopify(settings) => {
            shared(shopify::connector((**settings).clone(), mapping(), timeout))
        }
        TargetKind::Magento(settings) => {
            shared(magento::connector((**settings).clone(), mapping(), timeout))
        }
        TargetKind::Odoo(settings) => {
            shared(odoo::connector((**settings).clone(), mapping(), timeout))
        }
        TargetKind::Rest(settings) => {
            shared(rest::connector((**settings).clone(), mapping(), timeout))
        }
        TargetKind::Webhook(webhook) => shared(pimsync_connectors::webhook::connector(
            webhook.settings.clone(),
            mapping(),
        )),
    }
}

fn shared<C: Connector + 'static, E: Display>(
    built: Result<C, E>,
) -> Result<Arc<dyn Connector>, String> {
    built
        .map(|connector| Arc::new(connector) as Arc<dyn Connector>)
        .map_err(|error| error.to_string())
}
