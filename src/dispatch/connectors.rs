//! Builds each target's connector from its config.

use std::sync::Arc;

use pimsync_connectors::Connector;
use pimsync_connectors::erp::{odoo, rest};
use pimsync_connectors::http_target::HttpTarget;
use pimsync_connectors::log::LogConnector;

use crate::config::{TargetConfig, TargetKind};

pub fn build(target: &TargetConfig) -> Result<Arc<dyn Connector>, String> {
    let timeout = target.delivery.request_timeout;
    match &target.kind {
        TargetKind::Log { path } => LogConnector::open(path.as_ref())
            .map(|c| Arc::new(c) as Arc<dyn Connector>)
            .map_err(|e| format!("cannot open the log file: {e}")),
        TargetKind::Http {
            base_url,
            bearer_token,
        } => {
            let token = bearer_token
                .as_ref()
                .map(|t| String::from_utf8_lossy(t.expose()).into_owned());
            HttpTarget::new(base_url, token, timeout)
                .map(|c| Arc::new(c) as Arc<dyn Connector>)
                .map_err(|e| e.to_string())
        }
        TargetKind::Odoo(settings) => {
            odoo::connector((**settings).clone(), target.mapping.clone(), timeout)
                .map(|c| Arc::new(c) as Arc<dyn Connector>)
                .map_err(|e| e.to_string())
        }
        TargetKind::Rest(settings) => {
            rest::connector((**settings).clone(), target.mapping.clone(), timeout)
                .map(|c| Arc::new(c) as Arc<dyn Connector>)
                .map_err(|e| e.to_string())
        }
        TargetKind::Magento(settings) => pimsync_connectors::magento::connector(
            settings.clone(),
            target.mapping.clone(),
            timeout,
        )
        .map(|c| Arc::new(c) as Arc<dyn Connector>)
        .map_err(|e| e.to_string()),
        TargetKind::Shopify { .. } => Err(format!(
            "kind = \"{}\" is not available in this build yet",
            target.kind.name()
        )),
    }
}
