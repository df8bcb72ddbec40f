//! Which targets a product goes to: each target's filter, evaluated on the product's
//! snapshot. The store calls this inside the ingest transaction, so that the outbox rows
//! are written in the same commit as the product itself.

use pimsync_connectors::Snapshot;

use crate::config::{TargetConfig, TargetFilter};

/// The targets and their filters, in config order.
#[derive(Debug, Clone, Default)]
pub struct Router {
    targets: Vec<(String, TargetFilter)>,
    /// Targets that get every accepted change, not only the latest state
    /// ([`TargetConfig::keeps_history`]).
    history: Vec<String>,
    /// Targets that are told about changes (webhooks) rather than converged to a state.
    events: Vec<String>,
    /// Targets that hold a product model's variants inside the model's own record.
    folds_variants: Vec<String>,
}

impl Router {
    pub fn new(targets: &[TargetConfig]) -> Router {
        Router {
            targets: targets
                .iter()
                .map(|t| (t.name.clone(), t.filter.clone()))
                .collect(),
            history: targets
                .iter()
                .filter(|t| t.keeps_history())
                .map(|t| t.name.clone())
                .collect(),
            events: targets
                .iter()
                .filter(|t| matches!(t.kind, crate::config::TargetKind::Webhook(_)))
                .map(|t| t.name.clone())
                .collect(),
            folds_variants: targets
                .iter()
                .filter(|t| matches!(t.kind, crate::config::TargetKind::Shopify(_)))
                .map(|t| t.name.clone())
                .collect(),
        }
    }

    /// Whether `target` holds variants inside their product model's record (a Shopify
    /// product's variants): a variant's change is applied by applying its model again, and
    /// the variant itself is never applied on its own there.
    pub fn folds_variants(&self, target: &str) -> bool {
        self.folds_variants.iter().any(|t| t == target)
    }

    /// Whether `target` receives events: then each accepted change needs an idempotency
    /// key of its own (its webhook-id), even when its content equals an earlier state's —
    /// a product edited A → B → A must not repeat A's id, or a receiver deduplicating by
    /// id would drop the revert.
    pub fn is_event_target(&self, target: &str) -> bool {
        self.events.iter().any(|t| t == target)
    }

    /// Whether the ingest must record each change for `target` in the store's history.
    pub fn keeps_history(&self, target: &str) -> bool {
        self.history.iter().any(|t| t == target)
    }

    /// Marks `target` as holding variants inside their model (as a Shopify target does).
    #[cfg(test)]
    pub(crate) fn folding(mut self, target: &str) -> Router {
        self.folds_variants.push(target.to_owned());
        self
    }

    /// Every target name, for deletions of products whose earlier content is unknown.
    pub fn all(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|(name, _)| name.as_str())
    }

    /// The targets whose filter admits this snapshot.
    pub fn matching<'a>(&'a self, snapshot: &'a Snapshot) -> impl Iterator<Item = &'a str> {
        self.targets
            .iter()
            .filter(move |(_, filter)| admits(filter, snapshot))
            .map(|(name, _)| name.as_str())
    }
}

fn admits(filter: &TargetFilter, snapshot: &Snapshot) -> bool {
    if filter.enabled_only && snapshot.enabled != Some(true) {
        return false;
    }
    if !filter.families.is_empty()
        && !snapshot
            .family
            .as_ref()
            .is_some_and(|family| filter.families.contains(family))
    {
        return false;
    }
    if !filter.categories.is_empty()
        && !snapshot
            .categories
            .iter()
            .any(|category| filter.categories.contains(category))
    {
        return false;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TargetKind;

    fn target(name: &str, filter: TargetFilter) -> TargetConfig {
        TargetConfig {
            name: name.to_owned(),
            filter,
            mapping: Default::default(),
            delivery: Default::default(),
            kind: TargetKind::Log { path: None },
        }
    }

    #[test]
    fn filters_combine_family_category_and_enabled() {
        let router = Router::new(&[
            target("all", TargetFilter::default()),
            target(
                "chairs",
                TargetFilter {
                    families: vec!["chairs".into()],
                    ..Default::default()
                },
            ),
            target(
                "sale-enabled",
                TargetFilter {
                    categories: vec!["sale".into(), "new".into()],
                    enabled_only: true,
                    ..Default::default()
                },
            ),
        ]);
        let mut chair = Snapshot {
            family: Some("chairs".into()),
            categories: vec!["sale".into()],
            ..Default::default()
        };
        assert_eq!(
            router.matching(&chair).collect::<Vec<_>>(),
            ["all", "chairs"]
        );
        chair.enabled = Some(true);
        assert_eq!(
            router.matching(&chair).collect::<Vec<_>>(),
            ["all", "chairs", "sale-enabled"]
        );
        let table = Snapshot {
            family: Some("tables".into()),
            enabled: Some(true),
            ..Default::default()
        };
        assert_eq!(router.matching(&table).collect::<Vec<_>>(), ["all"]);
        assert_eq!(router.all().count(), 3);
    }
}
