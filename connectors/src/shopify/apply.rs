//! The `Connector` implementation: one apply is at most a handful of GraphQL calls —
//! productSet (the upsert), inventorySetQuantities (stock), publishablePublish (once per
//! set of publications), or the deletion policy's mutation.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::sync::OnceCell;
use tracing::{Instrument, debug, info_span};

use super::client::Client;
use super::documents::{self as docs, Document};
use super::errors::{only_code, user_errors};
use super::mapping::plan;
use super::settings::{DeletionPolicy, MAX_LIST_ITEMS, MAX_OPTIONS, ShopifySettings};
use crate::connector::{Applied, ApplyError, ApplyRequest, Connector, Desired, RemoteIds};
use crate::mapping::Mapping;
use crate::product::{ProductKind, Snapshot};

/// Remote id keys kept in `Applied.remote_ids`.
pub const PRODUCT_ID: &str = "product";
pub const PUBLISHED: &str = "published";
pub const VARIANT_PREFIX: &str = "variant:";
pub const INVENTORY_ITEM_PREFIX: &str = "inventory_item:";

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("shopify: {0}")]
    Invalid(String),
    #[error("shopify: cannot build the HTTP client: {0}")]
    Http(#[from] reqwest::Error),
}

/// Builds the Shopify connector for one target. `timeout` bounds each HTTP request.
pub fn connector(
    mut settings: ShopifySettings,
    mapping: Mapping,
    timeout: Duration,
) -> Result<ShopifyConnector, BuildError> {
    if mapping.get("stock").is_some() && settings.location_id.is_none() {
        return Err(BuildError::Invalid(
            "the stock field is mapped but no location_id is configured".into(),
        ));
    }
    if settings.options.len() > MAX_OPTIONS {
        return Err(BuildError::Invalid(format!(
            "at most {MAX_OPTIONS} option axes (Shopify's limit)"
        )));
    }
    settings.location_id = settings.location_id.map(|id| gid("Location", &id));
    settings.publications = settings
        .publications
        .iter()
        .map(|id| gid("Publication", id))
        .collect();
    let client = Client::new(&settings, timeout)?;
    Ok(ShopifyConnector {
        settings,
        mapping,
        client,
        definition: OnceCell::new(),
    })
}

/// A bare numeric id becomes `gid://shopify/{kind}/{id}`; a GID stays as it is.
fn gid(kind: &str, id: &str) -> String {
    if id.starts_with("gid://") {
        id.to_owned()
    } else {
        format!("gid://shopify/{kind}/{id}")
    }
}

pub struct ShopifyConnector {
    settings: ShopifySettings,
    mapping: Mapping,
    client: Client,
    /// Set once the identifier's metafield definition is known to exist in the shop.
    definition: OnceCell<()>,
}

impl ShopifyConnector {
    pub fn settings(&self) -> &ShopifySettings {
        &self.settings
    }

    /// What the client believes of the shop's bucket: (available, maximum, restore rate).
    pub fn bucket(&self) -> (f64, f64, f64) {
        self.client.bucket_state()
    }

    async fn ensure_definition(&self) -> Result<(), ApplyError> {
        self.definition
            .get_or_try_init(|| async {
                let variables = json!({"definition": {
                    "namespace": self.settings.identifier_namespace,
                    "key": self.settings.identifier_key,
                    "name": "PIM key",
                    "description": "The product's key in the PIM; pimsync finds products by it.",
                    "ownerType": "PRODUCT",
                    "type": "id",
                }});
                let data = self
                    .client
                    .run(&docs::METAFIELD_DEFINITION_CREATE, variables)
                    .await?;
                let errors = data.pointer("/metafieldDefinitionCreate/userErrors");
                if only_code(errors, "TAKEN") {
                    return Ok(());
                }
                user_errors("metafieldDefinitionCreate", errors)
            })
            .await
            .map(|_| ())
    }

    async fn upsert(
        &self,
        request: &ApplyRequest<'_>,
        kind: ProductKind,
        snapshot: &Snapshot,
        variants: &[crate::Variant],
    ) -> Result<Applied, ApplyError> {
        if kind == ProductKind::Product && snapshot.parent.is_some() {
            // A variant lives inside its product model's Shopify product, which the daemon
            // applies again when the variant changes; on its own it would be a duplicate
            // product with the same SKU.
            tracing::debug!("a variant is applied through its product model; no call");
            return Ok(Applied {
                remote_ids: request.remote_ids.clone(),
                skipped: true,
            });
        }
        let plan = plan(
            &self.settings,
            &self.mapping,
            request.product_key,
            kind,
            snapshot,
            variants,
        )?;
        self.ensure_definition().await?;
        let document = if plan.stock.is_empty() {
            &docs::PRODUCT_SET
        } else {
            &docs::PRODUCT_SET_WITH_VARIANTS
        };
        let variables = json!({
            "input": plan.input,
            "identifier": {"customId": self.custom_id(request.product_key)},
        });
        let data = self.client.run(document, variables).await?;
        user_errors("productSet", data.pointer("/productSet/userErrors"))?;
        let product_id = string_at(&data, "/productSet/product/id")
            .ok_or_else(|| ApplyError::retryable("productSet: no product id in the answer"))?;
        let mut remote_ids = RemoteIds::new();
        remote_ids.insert(PRODUCT_ID.into(), product_id.clone());
        if !plan.stock.is_empty() {
            let connection = data.pointer("/productSet/product/variants").cloned();
            let variants = self.all_variants(&product_id, connection).await?;
            for node in &variants {
                if let (Some(sku), Some(id), Some(item)) = (
                    node.get("sku").and_then(Value::as_str),
                    node.get("id").and_then(Value::as_str),
                    node.pointer("/inventoryItem/id").and_then(Value::as_str),
                ) {
                    remote_ids.insert(format!("{VARIANT_PREFIX}{sku}"), id.to_owned());
                    remote_ids.insert(format!("{INVENTORY_ITEM_PREFIX}{sku}"), item.to_owned());
                }
            }
            self.set_stock(request, &plan.stock, &remote_ids).await?;
        }
        if !self.settings.publications.is_empty() {
            let wanted = self.settings.publications.join(",");
            let same_product = request.remote_ids.get(PRODUCT_ID) == Some(&product_id);
            if !same_product || request.remote_ids.get(PUBLISHED) != Some(&wanted) {
                self.publish(&product_id).await?;
            }
            remote_ids.insert(PUBLISHED.into(), wanted);
        }
        Ok(Applied::new(remote_ids))
    }

    fn custom_id(&self, product_key: &str) -> Value {
        json!({
            "namespace": self.settings.identifier_namespace,
            "key": self.settings.identifier_key,
            "value": product_key,
        })
    }

    /// The variants productSet returned, and the further pages beyond 250.
    async fn all_variants(
        &self,
        product_id: &str,
        mut connection: Option<Value>,
    ) -> Result<Vec<Value>, ApplyError> {
        let mut nodes = Vec::new();
        while let Some(page) = connection.take() {
            if let Some(list) = page.get("nodes").and_then(Value::as_array) {
                nodes.extend(list.iter().cloned());
            }
            let more = page.pointer("/pageInfo/hasNextPage") == Some(&Value::Bool(true));
            let cursor = string_at(&page, "/pageInfo/endCursor");
            if let (true, Some(after)) = (more, cursor) {
                let variables = json!({"id": product_id, "after": after});
                let data = self.client.run(&docs::PRODUCT_VARIANTS, variables).await?;
                connection = data.pointer("/product/variants").cloned();
            }
        }
        Ok(nodes)
    }

    /// Sets absolute `available` quantities, 250 per call. Each call's idempotency key is
    /// the apply's (with the chunk number when there are several), so a retry of the
    /// same desired state replays rather than repeats.
    async fn set_stock(
        &self,
        request: &ApplyRequest<'_>,
        stock: &[(String, i64)],
        remote_ids: &RemoteIds,
    ) -> Result<(), ApplyError> {
        let location = self.settings.location_id.as_deref().unwrap_or_default();
        let mut quantities = Vec::new();
        for (sku, quantity) in stock {
            let Some(item) = remote_ids.get(&format!("{INVENTORY_ITEM_PREFIX}{sku}")) else {
                return Err(ApplyError::retryable(format!(
                    "productSet answered without an inventory item for SKU {sku}"
                )));
            };
            quantities.push(json!({
                "inventoryItemId": item,
                "locationId": location,
                "quantity": quantity,
                "changeFromQuantity": null,
            }));
        }
        let chunks: Vec<&[Value]> = quantities.chunks(MAX_LIST_ITEMS).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let key = if chunks.len() == 1 {
                request.idempotency_key.to_owned()
            } else {
                format!("{}-stock-{i}", request.idempotency_key)
            };
            let input = json!({
                "name": "available",
                "reason": "correction",
                "referenceDocumentUri": reference_uri(request.product_key),
                "quantities": chunk,
            });
            debug!(idempotency_key = %key, items = chunk.len(), "setting stock");
            let errors = self.set_quantities(&input, &key).await?;
            let retry_key = if only_code(errors.as_ref(), "ITEM_NOT_STOCKED_AT_LOCATION") {
                // Nothing was set. Stock the items Shopify named at the location, then
                // set again under a key of its own (the first key's answer is this error).
                self.activate(chunk, errors.as_ref(), location, &key)
                    .await?;
                format!("{key}-activated")
            } else if only_code(errors.as_ref(), "IDEMPOTENCY_PREVIOUS_ATTEMPT_FAILED") {
                // The earlier request under this key failed and changed nothing, so a
                // fresh key (unique to this attempt) cannot double-apply.
                format!("{key}-attempt-{}", request.attempt)
            } else {
                user_errors("inventorySetQuantities", errors.as_ref())?;
                continue;
            };
            let errors = self.set_quantities(&input, &retry_key).await?;
            user_errors("inventorySetQuantities", errors.as_ref())?;
        }
        Ok(())
    }

    /// One `inventorySetQuantities` under `key`; its user errors, if any.
    async fn set_quantities(&self, input: &Value, key: &str) -> Result<Option<Value>, ApplyError> {
        let data = self
            .client
            .run(
                &docs::INVENTORY_SET_QUANTITIES,
                json!({"input": input, "idempotencyKey": key}),
            )
            .await?;
        Ok(data.pointer("/inventorySetQuantities/userErrors").cloned())
    }

    /// Activates at `location` the items of `chunk` that `errors` name (their field path
    /// ends in the quantity's index), or every item of the chunk if none is named.
    async fn activate(
        &self,
        chunk: &[Value],
        errors: Option<&Value>,
        location: &str,
        key: &str,
    ) -> Result<(), ApplyError> {
        let named: Vec<usize> = errors
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("field")?.as_array()?.get(2)?.as_str()?.parse().ok())
            .filter(|&i: &usize| i < chunk.len())
            .collect();
        let indexes: Vec<usize> = if named.is_empty() {
            (0..chunk.len()).collect()
        } else {
            named
        };
        for i in indexes {
            let item = &chunk[i]["inventoryItemId"];
            debug!(inventory_item = %item, "stocking the item at the location");
            let variables = json!({
                "inventoryItemId": item,
                "locationId": location,
                "idempotencyKey": format!("{key}-activate-{i}"),
            });
            let data = self
                .client
                .run(&docs::INVENTORY_ACTIVATE, variables)
                .await?;
            user_errors(
                "inventoryActivate",
                data.pointer("/inventoryActivate/userErrors"),
            )?;
        }
        Ok(())
    }

    async fn publish(&self, product_id: &str) -> Result<(), ApplyError> {
        let input: Vec<Value> = self
            .settings
            .publications
            .iter()
            .map(|id| json!({"publicationId": id}))
            .collect();
        let data = self
            .client
            .run(
                &docs::PUBLISHABLE_PUBLISH,
                json!({"id": product_id, "input": input}),
            )
            .await?;
        user_errors(
            "publishablePublish",
            data.pointer("/publishablePublish/userErrors"),
        )
    }

    async fn delete(&self, request: &ApplyRequest<'_>) -> Result<Applied, ApplyError> {
        let id = match request.remote_ids.get(PRODUCT_ID) {
            Some(id) => Some(id.clone()),
            None => {
                let variables =
                    json!({"identifier": {"customId": self.custom_id(request.product_key)}});
                let data = self
                    .client
                    .run(&docs::PRODUCT_BY_IDENTIFIER, variables)
                    .await?;
                string_at(&data, "/productByIdentifier/id")
            }
        };
        // Never synced, or already gone: the desired state holds.
        let Some(id) = id else {
            return Ok(Applied::default());
        };
        let (document, variables, field): (&Document, Value, &str) = match self.settings.deletion {
            DeletionPolicy::Delete => (
                &docs::PRODUCT_DELETE,
                json!({"input": {"id": id}}),
                "productDelete",
            ),
            DeletionPolicy::Archive | DeletionPolicy::Draft => {
                let status = match self.settings.deletion {
                    DeletionPolicy::Draft => "DRAFT",
                    _ => "ARCHIVED",
                };
                (
                    &docs::PRODUCT_UPDATE_STATUS,
                    json!({"product": {"id": id, "status": status}}),
                    "productUpdate",
                )
            }
        };
        let data = self.client.run(document, variables).await?;
        let errors = data.get(field).and_then(|p| p.get("userErrors"));
        if let Err(error) = user_errors(field, errors) {
            if error
                .message()
                .to_ascii_lowercase()
                .contains("does not exist")
            {
                return Ok(Applied::default());
            }
            return Err(error);
        }
        Ok(match self.settings.deletion {
            DeletionPolicy::Delete => Applied::default(),
            // The product stays in the shop: keep addressing it.
            _ => Applied::new(RemoteIds::from([(PRODUCT_ID.to_owned(), id)])),
        })
    }
}

#[async_trait]
impl Connector for ShopifyConnector {
    fn kind(&self) -> &'static str {
        "shopify"
    }

    /// Waits until the shop's bucket could pay for a productSet.
    async fn ready(&self) {
        self.client.ready(docs::PRODUCT_SET.cost).await;
    }

    async fn apply(&self, request: ApplyRequest<'_>) -> Result<Applied, ApplyError> {
        let span = info_span!(
            "shopify_apply",
            target = request.target,
            product_key = request.product_key,
            idempotency_key = request.idempotency_key,
            attempt = request.attempt,
        );
        async {
            match request.desired {
                Desired::Upsert {
                    kind,
                    snapshot,
                    variants,
                } => self.upsert(&request, kind, snapshot, variants).await,
                Desired::Delete => self.delete(&request).await,
            }
        }
        .instrument(span)
        .await
    }
}

/// Names pimsync and the product in Shopify's inventory history.
fn reference_uri(product_key: &str) -> String {
    format!(
        "gid://pimsync/Product/{}",
        crate::http::encode_component(product_key)
    )
}

fn string_at(value: &Value, pointer: &str) -> Option<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
}
