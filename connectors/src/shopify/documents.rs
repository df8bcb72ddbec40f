//! Every GraphQL document the connector sends, in one place, so the contract tests can
//! validate each of them against Shopify's published schema (`ALL`).
//!
//! `cost` is the requested cost we reserve in the local bucket before the first response
//! tells us the real one (mutations cost 10; connections cost about their `first`). The
//! client then learns each operation's `requestedQueryCost` from the responses.

/// One GraphQL operation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Document {
    /// The operation name, as in the text (the fake Shopify dispatches on it).
    pub name: &'static str,
    pub text: &'static str,
    pub cost: f64,
}

/// Ensures the `id`-type metafield definition that productSet's `customId` identifier
/// needs. Answers `TAKEN` when it exists, which is success for us.
pub const METAFIELD_DEFINITION_CREATE: Document = Document {
    name: "PimsyncMetafieldDefinitionCreate",
    text: r#"mutation PimsyncMetafieldDefinitionCreate($definition: MetafieldDefinitionInput!) {
  metafieldDefinitionCreate(definition: $definition) {
    createdDefinition { id }
    userErrors { code field message }
  }
}"#,
    cost: 10.0,
};

/// Upsert by custom id when no stock is synced: only the product id comes back.
pub const PRODUCT_SET: Document = Document {
    name: "PimsyncProductSet",
    text: r#"mutation PimsyncProductSet($input: ProductSetInput!, $identifier: ProductSetIdentifiers!) {
  productSet(input: $input, identifier: $identifier, synchronous: true) {
    product { id }
    userErrors { code field message }
  }
}"#,
    cost: 10.0,
};

/// Upsert by custom id, returning the variants' inventory items for the stock call.
pub const PRODUCT_SET_WITH_VARIANTS: Document = Document {
    name: "PimsyncProductSetWithVariants",
    text: r#"mutation PimsyncProductSetWithVariants($input: ProductSetInput!, $identifier: ProductSetIdentifiers!) {
  productSet(input: $input, identifier: $identifier, synchronous: true) {
    product {
      id
      variants(first: 250) {
        nodes { id sku inventoryItem { id } }
        pageInfo { hasNextPage endCursor }
      }
    }
    userErrors { code field message }
  }
}"#,
    cost: 20.0,
};

/// The next page of variants, for products with more than 250.
pub const PRODUCT_VARIANTS: Document = Document {
    name: "PimsyncProductVariants",
    text: r#"query PimsyncProductVariants($id: ID!, $after: String) {
  product(id: $id) {
    variants(first: 250, after: $after) {
      nodes { id sku inventoryItem { id } }
      pageInfo { hasNextPage endCursor }
    }
  }
}"#,
    cost: 10.0,
};

/// Sets absolute `available` quantities. From 2026-04 Shopify requires `@idempotent`
/// here, and `changeFromQuantity` on every quantity (null opts out of compare-and-swap).
pub const INVENTORY_SET_QUANTITIES: Document = Document {
    name: "PimsyncInventorySetQuantities",
    text: r#"mutation PimsyncInventorySetQuantities($input: InventorySetQuantitiesInput!, $idempotencyKey: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $idempotencyKey) {
    inventoryAdjustmentGroup { id }
    userErrors { code field message }
  }
}"#,
    cost: 10.0,
};

/// Stocks an inventory item at the location, for an item `inventorySetQuantities` found
/// not stocked there (a new variant in a shop whose default location is another one).
/// From 2026-04 Shopify requires `@idempotent` here too.
pub const INVENTORY_ACTIVATE: Document = Document {
    name: "PimsyncInventoryActivate",
    text: r#"mutation PimsyncInventoryActivate($inventoryItemId: ID!, $locationId: ID!, $idempotencyKey: String!) {
  inventoryActivate(inventoryItemId: $inventoryItemId, locationId: $locationId) @idempotent(key: $idempotencyKey) {
    inventoryLevel { id }
    userErrors { field message }
  }
}"#,
    cost: 10.0,
};

/// Finds a product by its PIM key when no product GID is remembered (deletion of a
/// product synced before pimsync kept remote ids, or by someone else).
pub const PRODUCT_BY_IDENTIFIER: Document = Document {
    name: "PimsyncProductByIdentifier",
    text: r#"query PimsyncProductByIdentifier($identifier: ProductIdentifierInput!) {
  productByIdentifier(identifier: $identifier) { id }
}"#,
    cost: 1.0,
};

pub const PRODUCT_DELETE: Document = Document {
    name: "PimsyncProductDelete",
    text: r#"mutation PimsyncProductDelete($input: ProductDeleteInput!) {
  productDelete(input: $input, synchronous: true) {
    deletedProductId
    userErrors { field message }
  }
}"#,
    cost: 10.0,
};

/// Archive or draft on deletion (the deletion policy).
pub const PRODUCT_UPDATE_STATUS: Document = Document {
    name: "PimsyncProductUpdateStatus",
    text: r#"mutation PimsyncProductUpdateStatus($product: ProductUpdateInput!) {
  productUpdate(product: $product) {
    product { id status }
    userErrors { field message }
  }
}"#,
    cost: 10.0,
};

pub const PUBLISHABLE_PUBLISH: Document = Document {
    name: "PimsyncPublishablePublish",
    text: r#"mutation PimsyncPublishablePublish($id: ID!, $input: [PublicationInput!]!) {
  publishablePublish(id: $id, input: $input) {
    userErrors { field message }
  }
}"#,
    cost: 10.0,
};

/// Every document, for the contract tests.
pub const ALL: &[Document] = &[
    METAFIELD_DEFINITION_CREATE,
    PRODUCT_SET,
    PRODUCT_SET_WITH_VARIANTS,
    PRODUCT_VARIANTS,
    INVENTORY_SET_QUANTITIES,
    INVENTORY_ACTIVATE,
    PRODUCT_BY_IDENTIFIER,
    PRODUCT_DELETE,
    PRODUCT_UPDATE_STATUS,
    PUBLISHABLE_PUBLISH,
];

/// The document with this operation name.
pub fn by_name(name: &str) -> Option<&'static Document> {
    ALL.iter().find(|d| d.name == name)
}
