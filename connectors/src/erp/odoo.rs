//! The `odoo` connector: Odoo 19+ through the JSON-2 API
//! (`POST {base}/json/2/{model}/{method}`, `Authorization: bearer <API key>`).
//!
//! Odoo has no idempotency key and `default_code` is not unique, so a product is found by
//! a stable external id: an `ir.model.data` row (module `pimsync`, name derived from the
//! product key) pointing at the record. The record id is remembered in `remote_ids`, so
//! an update is one `write`.
//!
//! Why a retry never creates a second record: `create` and the `ir.model.data` row are
//! two JSON-2 calls, i.e. two transactions. If `create` commits and its response is lost,
//! the external id does not exist yet, so looking it up alone would create again. The
//! record therefore carries the product key in `key_field` (default `default_code`),
//! written in the same transaction as the record; when the external id is missing, the
//! record is looked up by that field (archived ones included) and adopted. The same path
//! links products that existed in Odoo before pimsync. Two records with the key are
//! ambiguous and reported, never guessed.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::connector::{Applied, ApplyError, ApplyRequest, Connector, Desired, RemoteIds};
use crate::mapping::Mapping;
use crate::product::Snapshot;

use super::BuildError;

#[cfg(test)]
mod fake;
mod rpc;
#[cfg(test)]
mod tests;
mod vals;

pub use vals::{FIELDS, is_mappable};

use rpc::{CallError, Rpc};

/// The models a target may write: templates (the default) or product variants, for which
/// Odoo creates the template itself.
pub const MODELS: &[&str] = &["product.template", "product.product"];
/// The `ir.model.data` module of pimsync's external ids.
pub const MODULE: &str = "pimsync";
/// `remote_ids` keys.
pub const REMOTE_ID: &str = "odoo_id";
pub const REMOTE_MODEL: &str = "odoo_model";

/// What a deletion in the PIM does in Odoo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDelete {
    /// `active = false`: the usual Odoo practice, since products referenced by orders
    /// cannot be unlinked. A later upsert reactivates the same record.
    #[default]
    Archive,
    /// `unlink`: the record (and its external id) is removed.
    Unlink,
}

/// `[targets.odoo]`, with secrets resolved.
#[derive(Clone, PartialEq)]
pub struct OdooSettings {
    /// e.g. `https://erp.example.com` (without `/json/2`).
    pub base_url: String,
    /// Sent as `X-Odoo-Database` when the server hosts several databases.
    pub database: Option<String>,
    pub api_key: String,
    /// One of [`MODELS`].
    pub model: String,
    /// The field holding the product key, written with every create and write.
    pub key_field: String,
    /// Look records up by `ir.model.data` external id first (default). Without it the key
    /// field alone identifies a record, which suits a unique custom field.
    pub external_ids: bool,
    /// PIM category value → `product.category` id, for categories whose names differ.
    pub categories: BTreeMap<String, i64>,
    pub on_delete: OnDelete,
    /// Language of translatable fields (`name`, `description_sale`), e.g. `de_DE`.
    pub lang: Option<String>,
}

impl OdooSettings {
    /// Settings with every default: `product.template`, key field `default_code`,
    /// external ids, archive on delete.
    pub fn new(base_url: &str, api_key: &str) -> OdooSettings {
        OdooSettings {
            base_url: base_url.to_owned(),
            database: None,
            api_key: api_key.to_owned(),
            model: MODELS[0].to_owned(),
            key_field: "default_code".to_owned(),
            external_ids: true,
            categories: BTreeMap::new(),
            on_delete: OnDelete::Archive,
            lang: None,
        }
    }
}

impl std::fmt::Debug for OdooSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OdooSettings")
            .field("base_url", &self.base_url)
            .field("database", &self.database)
            .field("api_key", &"<redacted>")
            .field("model", &self.model)
            .field("key_field", &self.key_field)
            .field("external_ids", &self.external_ids)
            .field("categories", &self.categories)
            .field("on_delete", &self.on_delete)
            .field("lang", &self.lang)
            .finish()
    }
}

pub struct OdooConnector {
    rpc: Rpc,
    settings: OdooSettings,
    mapping: Mapping,
    /// Category name → id, resolved once per process.
    categories: Mutex<HashMap<String, i64>>,
}

/// Builds the Odoo connector of a target. `timeout` bounds each JSON-2 call.
pub fn connector(
    settings: OdooSettings,
    mapping: Mapping,
    timeout: Duration,
) -> Result<OdooConnector, BuildError> {
    if !MODELS.contains(&settings.model.as_str()) {
        return Err(BuildError(format!(
            "unsupported Odoo model \"{}\" (expected one of: {})",
            settings.model,
            MODELS.join(", ")
        )));
    }
    if let Some(field) = mapping.fields.keys().find(|f| !is_mappable(f)) {
        return Err(BuildError(format!(
            "unknown Odoo mapping field \"{field}\""
        )));
    }
    if mapping.fields.contains_key(&settings.key_field) {
        return Err(BuildError(format!(
            "\"{}\" is the key field (it always holds the product key) and cannot be mapped",
            settings.key_field
        )));
    }
    let rpc = Rpc {
        client: super::client(timeout)?,
        base_url: settings.base_url.trim_end_matches('/').to_owned(),
        database: settings.database.clone(),
        api_key: settings.api_key.clone(),
    };
    Ok(OdooConnector {
        rpc,
        settings,
        mapping,
        categories: Mutex::new(HashMap::new()),
    })
}

/// A record found for a product key; `linked` when found through its external id.
struct Found {
    id: i64,
    linked: bool,
}

#[async_trait]
impl Connector for OdooConnector {
    fn kind(&self) -> &'static str {
        "odoo"
    }

    async fn apply(&self, request: ApplyRequest<'_>) -> Result<Applied, ApplyError> {
        match request.desired {
            Desired::Upsert { snapshot, .. } => self.upsert(&request, snapshot).await,
            Desired::Delete => self.delete(&request).await,
        }
    }
}

impl OdooConnector {
    async fn upsert(
        &self,
        request: &ApplyRequest<'_>,
        snapshot: &Snapshot,
    ) -> Result<Applied, ApplyError> {
        let key = request.product_key;
        let vals::Vals { mut vals, categ } =
            vals::build(&self.mapping, snapshot, key, &self.settings.key_field)?;
        if let Some(name) = categ {
            vals.insert("categ_id".into(), json!(self.category(&name).await?));
        }
        let vals = Value::Object(vals);

        if let Some(id) = self.remembered(request.remote_ids) {
            match self.write(id, &vals).await {
                Ok(()) => return Ok(self.applied(id)),
                // Deleted in Odoo since: find it again or create it anew.
                Err(e) if e.is_missing_record() => {}
                Err(e) => return Err(e.into()),
            }
        }
        match self.find(key).await? {
            Some(found) => {
                if !found.linked {
                    self.link(found.id, key).await?;
                }
                self.write(found.id, &vals).await?;
                Ok(self.applied(found.id))
            }
            None => {
                let mut vals = vals;
                if vals.get("name").is_none() {
                    // Odoo requires a name; the key is better than a failed create.
                    vals["name"] = json!(key);
                }
                let id = self.create(&vals).await?;
                self.link(id, key).await?;
                Ok(self.applied(id))
            }
        }
    }

    async fn delete(&self, request: &ApplyRequest<'_>) -> Result<Applied, ApplyError> {
        let id = match self.remembered(request.remote_ids) {
            Some(id) => id,
            None => match self.find(request.product_key).await? {
                Some(found) => found.id,
                None => return Ok(Applied::default()),
            },
        };
        let result = match self.settings.on_delete {
            OnDelete::Archive => self.write(id, &json!({"active": false})).await,
            OnDelete::Unlink => self
                .call(&self.settings.model, "unlink", json!({"ids": [id]}))
                .await
                .map(drop),
        };
        match result {
            // Archived records keep their id: a later upsert reactivates the same one.
            Ok(()) if self.settings.on_delete == OnDelete::Archive => Ok(self.applied(id)),
            Ok(()) => Ok(Applied::default()),
            Err(e) if e.is_missing_record() => Ok(Applied::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// The id remembered by the last apply, if it was for the same model.
    fn remembered(&self, remote_ids: &RemoteIds) -> Option<i64> {
        if remote_ids.get(REMOTE_MODEL).map(String::as_str) != Some(self.settings.model.as_str()) {
            return None;
        }
        remote_ids.get(REMOTE_ID)?.parse().ok()
    }

    fn applied(&self, id: i64) -> Applied {
        let mut remote_ids = RemoteIds::new();
        remote_ids.insert(REMOTE_ID.into(), id.to_string());
        remote_ids.insert(REMOTE_MODEL.into(), self.settings.model.clone());
        Applied::new(remote_ids)
    }

    fn external_name(&self, key: &str) -> String {
        let prefix = match self.settings.model.as_str() {
            "product.product" => "product",
            _ => "template",
        };
        vals::external_name(prefix, key)
    }

    /// Finds the record of `key`: by external id, else by key field (see the module doc).
    async fn find(&self, key: &str) -> Result<Option<Found>, ApplyError> {
        let model = &self.settings.model;
        if self.settings.external_ids {
            let domain = json!([
                ["module", "=", MODULE],
                ["model", "=", model],
                ["name", "=", self.external_name(key)]
            ]);
            let rows = self
                .search_read("ir.model.data", domain, &["res_id"], 1, false)
                .await?;
            if let Some(id) = rows.first().and_then(|row| row_id(row, "res_id")) {
                return Ok(Some(Found { id, linked: true }));
            }
        }
        let domain = json!([[self.settings.key_field, "=", key]]);
        let rows = self.search_read(model, domain, &["id"], 2, true).await?;
        let ids: Vec<i64> = rows.iter().filter_map(|row| row_id(row, "id")).collect();
        match ids.as_slice() {
            [] => Ok(None),
            [id] => Ok(Some(Found {
                id: *id,
                linked: false,
            })),
            _ => Err(ApplyError::permanent(format!(
                "several {model} records have {} = \"{key}\" and none is linked to pimsync; \
                 keep one (or give it the external id {MODULE}.{}) and retry",
                self.settings.key_field,
                self.external_name(key)
            ))),
        }
    }

    async fn search_read(
        &self,
        model: &str,
        domain: Value,
        fields: &[&str],
        limit: u32,
        with_archived: bool,
    ) -> Result<Vec<Value>, ApplyError> {
        let mut args = json!({"domain": domain, "fields": fields, "limit": limit});
        if with_archived {
            args["context"] = self.context();
            args["context"]["active_test"] = json!(false);
        }
        match self.call(model, "search_read", args).await? {
            Value::Array(rows) => Ok(rows),
            other => Err(unexpected(model, "search_read", &other)),
        }
    }

    async fn create(&self, vals: &Value) -> Result<i64, ApplyError> {
        let model = &self.settings.model;
        let args = json!({"vals_list": [vals], "context": self.context()});
        let result = self.call(model, "create", args).await?;
        let id = match &result {
            Value::Array(ids) => ids.first().and_then(Value::as_i64),
            other => other.as_i64(),
        };
        id.ok_or_else(|| unexpected(model, "create", &result))
    }

    async fn write(&self, id: i64, vals: &Value) -> Result<(), CallError> {
        let args = json!({"ids": [id], "vals": vals, "context": self.context()});
        self.call(&self.settings.model, "write", args)
            .await
            .map(drop)
    }

    /// Creates the external id of a record. Right after `create`, or to adopt a record
    /// found by key field.
    async fn link(&self, id: i64, key: &str) -> Result<(), ApplyError> {
        if !self.settings.external_ids {
            return Ok(());
        }
        let row = json!({
            "module": MODULE,
            "name": self.external_name(key),
            "model": self.settings.model,
            "res_id": id,
            // Module updates must not overwrite what pimsync writes.
            "noupdate": true,
        });
        self.call("ir.model.data", "create", json!({"vals_list": [row]}))
            .await?;
        Ok(())
    }

    /// A category by configured id, else by name (`complete_name` for "A / B" paths).
    async fn category(&self, name: &str) -> Result<i64, ApplyError> {
        if let Some(id) = self.settings.categories.get(name) {
            return Ok(*id);
        }
        let mut cache = self.categories.lock().await;
        if let Some(id) = cache.get(name) {
            return Ok(*id);
        }
        let field = if name.contains(" / ") {
            "complete_name"
        } else {
            "name"
        };
        let domain = json!([[field, "=", name]]);
        let rows = self
            .search_read("product.category", domain, &["id"], 2, false)
            .await?;
        let ids: Vec<i64> = rows.iter().filter_map(|row| row_id(row, "id")).collect();
        match ids.as_slice() {
            [id] => {
                cache.insert(name.to_owned(), *id);
                Ok(*id)
            }
            [] => Err(ApplyError::permanent(format!(
                "no product.category named \"{name}\" in Odoo (create it, or map it to an id \
                 in [targets.odoo.categories])"
            ))),
            _ => Err(ApplyError::permanent(format!(
                "several product.category records are named \"{name}\" (use the full path \
                 \"Parent / {name}\", or map it to an id in [targets.odoo.categories])"
            ))),
        }
    }

    fn context(&self) -> Value {
        match &self.settings.lang {
            Some(lang) => json!({"lang": lang}),
            None => json!({}),
        }
    }

    async fn call(&self, model: &str, method: &str, args: Value) -> Result<Value, CallError> {
        self.rpc.call(model, method, args).await.map_err(|mut e| {
            // Say which call failed: an operator reading a dead letter needs it.
            let prefix = format!("{model}.{method}: ");
            match &mut e.error {
                ApplyError::Retryable { message, .. }
                | ApplyError::Throttled { message, .. }
                | ApplyError::Permanent { message }
                | ApplyError::Gone { message } => message.insert_str(0, &prefix),
            }
            e
        })
    }
}

fn row_id(row: &Value, field: &str) -> Option<i64> {
    row.get(field).and_then(Value::as_i64)
}

fn unexpected(model: &str, method: &str, value: &Value) -> ApplyError {
    let shown = crate::http::shorten(&value.to_string(), 200);
    ApplyError::permanent(format!("{model}.{method}: unexpected response {shown}"))
}
