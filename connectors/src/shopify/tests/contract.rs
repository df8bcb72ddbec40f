//! The contract with Shopify: every document the connector can send, and every variables
//! object it sent in a run that exercises all of its paths against the fake, validated
//! against the Admin API schemas in ../shared/schemas/shopify (2026-04 and 2026-07);
//! plus the two run-time rules the SDL cannot express (see ../shared/schemas/README.md):
//! `@idempotent(key:)` on the mutations that require it, and `changeFromQuantity` on
//! every `inventorySetQuantities` quantity.

use std::sync::OnceLock;

use apollo_compiler::executable::{Selection, Value as GqlValue};
use apollo_compiler::response::JsonMap;
use apollo_compiler::validation::Valid;
use apollo_compiler::{ExecutableDocument, Schema};
use serde_json::{Value, json};

use super::fake::{Fake, Recorded};
use super::*;
use crate::shopify::documents::{self, ALL};
use crate::shopify::{DeletionPolicy, MetafieldSpec};

const VERSIONS: &[&str] = &["2026-04", "2026-07"];

/// The schemas are 3.5 MB each: parse them once per test binary.
fn schemas() -> &'static [(&'static str, Valid<Schema>)] {
    static SCHEMAS: OnceLock<Vec<(&'static str, Valid<Schema>)>> = OnceLock::new();
    SCHEMAS.get_or_init(|| {
        VERSIONS
            .iter()
            .map(|version| {
                let path = format!(
                    "{}/../../shared/schemas/shopify/admin-{version}.graphql",
                    env!("CARGO_MANIFEST_DIR")
                );
                let text =
                    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {path}: {e}"));
                let schema = Schema::parse_and_validate(text, &path)
                    .unwrap_or_else(|e| panic!("{path} does not validate: {}", e.errors));
                (*version, schema)
            })
            .collect()
    })
}

fn parse(schema: &Valid<Schema>, version: &str, text: &str) -> Valid<ExecutableDocument> {
    ExecutableDocument::parse_and_validate(schema, text, "document.graphql")
        .unwrap_or_else(|e| panic!("invalid against {version}:\n{text}\n{}", e.errors))
}

#[test]
fn every_document_validates_against_both_versions() {
    for (version, schema) in schemas() {
        for document in ALL {
            let doc = parse(schema, version, document.text);
            let operation = doc
                .operations
                .get(Some(document.name))
                .unwrap_or_else(|_| panic!("{} names its operation", document.name));
            assert!(operation.name.as_deref() == Some(document.name));
            check_directives(&doc, document.name, None);
        }
    }
}

/// Every request the connector sent while exercising every path is checked: document,
/// variables (coerced against the input types: unknown keys, wrong shapes and missing
/// required fields fail), and the run-time rules.
#[tokio::test]
async fn every_request_sent_satisfies_the_schema_and_runtime_rules() {
    let fake = Fake::start(100_000.0, 10_000.0).await;
    exercise(&fake).await;
    let requests = fake.requests();
    let sent: std::collections::BTreeSet<_> =
        requests.iter().map(|r| r.operation.as_str()).collect();
    for document in ALL {
        assert!(
            sent.contains(document.name),
            "{} was not exercised",
            document.name
        );
    }
    for (version, schema) in schemas() {
        for request in &requests {
            check_request(schema, version, request);
        }
    }
}

fn check_request(schema: &Valid<Schema>, version: &str, request: &Recorded) {
    let document = documents::by_name(&request.operation)
        .unwrap_or_else(|| panic!("unknown operation {}", request.operation));
    assert_eq!(request.query, document.text, "sent text is the const");
    let doc = parse(schema, version, &request.query);
    let operation = doc.operations.get(Some(document.name)).expect("operation");
    let variables: JsonMap = serde_json::from_value(request.variables.clone())
        .unwrap_or_else(|e| panic!("{}: variables are not an object: {e}", document.name));
    if let Err(error) =
        apollo_compiler::request::coerce_variable_values(schema, operation, &variables)
    {
        panic!(
            "{} variables do not fit {version}: {}\n{:#}",
            document.name,
            error.message(),
            request.variables
        );
    }
    check_directives(&doc, document.name, Some(&request.variables));
    check_quantities(document.name, &request.variables);
}

/// Mutations whose description says they take (or from 2026-04 require) an idempotency
/// key must carry `@idempotent(key:)`, and the key must not be blank.
fn check_directives(doc: &ExecutableDocument, name: &str, variables: Option<&Value>) {
    let Ok(operation) = doc.operations.get(Some(name)) else {
        return;
    };
    for selection in &operation.selection_set.selections {
        let Selection::Field(field) = selection else {
            continue;
        };
        let needs_key = field
            .definition
            .description
            .as_ref()
            .is_some_and(|d| d.contains("@idempotent"));
        let directive = field.directives.get("idempotent");
        if !needs_key {
            continue;
        }
        let directive = directive
            .unwrap_or_else(|| panic!("{name}: {} requires @idempotent(key:)", field.name));
        let key = directive
            .specified_argument_by_name("key")
            .unwrap_or_else(|| panic!("{name}: @idempotent without key"));
        let Some(variables) = variables else { continue };
        let key = match key.as_ref() {
            GqlValue::Variable(var) => variables[var.as_str()].as_str().map(str::to_owned),
            GqlValue::String(s) => Some(s.clone()),
            _ => None,
        };
        assert!(
            key.is_some_and(|k| !k.trim().is_empty()),
            "{name}: the idempotency key must be a non-blank string"
        );
    }
}

/// `changeFromQuantity` must be present (null opts out) on every quantity.
fn check_quantities(name: &str, variables: &Value) {
    if name != documents::INVENTORY_SET_QUANTITIES.name {
        return;
    }
    let quantities = variables["input"]["quantities"]
        .as_array()
        .expect("quantities");
    assert!(!quantities.is_empty());
    for quantity in quantities {
        assert!(
            quantity.get("changeFromQuantity").is_some(),
            "{name}: quantity without changeFromQuantity: {quantity}"
        );
    }
}

/// Drives every path the connector has, so every document and variables shape is sent.
async fn exercise(fake: &Fake) {
    let mut s = settings(fake);
    s.options = axes();
    s.publications = vec!["gid://shopify/Publication/1".into()];
    s.metafields = vec![
        MetafieldSpec {
            namespace: "custom".into(),
            key: "material".into(),
            kind: "single_line_text_field".into(),
            source: FieldSource::attribute("material"),
        },
        MetafieldSpec {
            namespace: "custom".into(),
            key: "colors".into(),
            kind: "list.single_line_text_field".into(),
            source: FieldSource::attribute("colors"),
        },
    ];
    let mut simple = product("Chair", "9.90", 4);
    simple.values.insert("material".into(), value(json!("oak")));
    simple
        .values
        .insert("colors".into(), value(json!(["red", "blue"])));
    simple.values.insert(
        "description".into(),
        vec![AttributeValue {
            locale: Some("en_US".into()),
            scope: None,
            data: json!("<p>Oak</p>"),
        }],
    );
    for policy in [
        DeletionPolicy::Delete,
        DeletionPolicy::Archive,
        DeletionPolicy::Draft,
    ] {
        let mut s = s.clone();
        s.deletion = policy;
        let shop = build(s);
        let applied = upsert(&shop, "C", &simple, &RemoteIds::new(), "k", 1)
            .await
            .expect("simple");
        delete(&shop, "C", &applied.remote_ids)
            .await
            .expect("delete");
        // By custom id, without remembered ids.
        delete(&shop, "C", &RemoteIds::new()).await.expect("lookup");
    }
    // A model with more than 250 variants: a second page of variants, two stock calls.
    let shop = build(s.clone());
    let many: Vec<Variant> = (0..300)
        .map(|i| {
            variant(
                &format!("V{i}"),
                &format!("c{}", i / 2),
                &format!("s{}", i % 2),
                i,
            )
        })
        .collect();
    upsert_model(
        &shop,
        "MODEL",
        ProductKind::ProductModel,
        &product("Model", "5.00", 0),
        &many,
        &RemoteIds::new(),
        "km",
        1,
    )
    .await
    .expect("model");
    // A new item not stocked at the location: activated, then set.
    fake.state().stock_new_items = false;
    upsert(&shop, "UNSTOCKED", &simple, &RemoteIds::new(), "ku", 1)
        .await
        .expect("activated");
    fake.state().stock_new_items = true;
    // Without stock mapped: the plain productSet.
    let mut no_stock = mapping();
    no_stock.fields.remove("stock");
    let shop = connector(s, no_stock, std::time::Duration::from_secs(5)).expect("connector");
    upsert(&shop, "N", &simple, &RemoteIds::new(), "kn", 1)
        .await
        .expect("no stock");
}

/// The checks above bite: a wrong key, a missing directive, a missing changeFromQuantity.
#[test]
fn the_contract_checks_catch_mistakes() {
    let (version, schema) = &schemas()[0];
    let request = |operation: &str, query: &str, variables: Value| Recorded {
        operation: operation.into(),
        query: query.into(),
        variables,
        api_version: version.to_string(),
        throttled: false,
    };
    let set = documents::PRODUCT_SET;
    let fails =
        |r: Recorded| std::panic::catch_unwind(|| check_request(schema, version, &r)).is_err();
    let ok = json!({"input": {"title": "T"}, "identifier": {"customId": {"namespace": "pim", "key": "key", "value": "A"}}});
    assert!(!fails(request(set.name, set.text, ok)));
    let unknown =
        json!({"input": {"titel": "T"}, "identifier": {"customId": {"key": "key", "value": "A"}}});
    assert!(fails(request(set.name, set.text, unknown)));
    let shape = json!({"input": {"tags": {"a": 1}}, "identifier": {"customId": {"key": "key", "value": "A"}}});
    assert!(fails(request(set.name, set.text, shape)));
    let missing = json!({"input": {"title": "T"}, "identifier": {"customId": {"key": "key"}}});
    assert!(fails(request(set.name, set.text, missing)));

    let inventory = documents::INVENTORY_SET_QUANTITIES;
    let quantity = json!({"inventoryItemId": "gid://shopify/InventoryItem/1", "locationId": "gid://shopify/Location/1", "quantity": 1, "changeFromQuantity": null});
    let vars = |q: Value, key: &str| json!({"input": {"name": "available", "reason": "correction", "quantities": [q]}, "idempotencyKey": key});
    assert!(!fails(request(
        inventory.name,
        inventory.text,
        vars(quantity.clone(), "k")
    )));
    assert!(fails(request(
        inventory.name,
        inventory.text,
        vars(quantity.clone(), " ")
    )));
    let mut without = quantity.clone();
    without
        .as_object_mut()
        .map(|q| q.remove("changeFromQuantity"));
    assert!(fails(request(
        inventory.name,
        inventory.text,
        vars(without, "k")
    )));
    let no_directive = inventory
        .text
        .replace(" @idempotent(key: $idempotencyKey)", "");
    let doc = ExecutableDocument::parse(schema, no_directive, "d.graphql").expect("parses");
    assert!(std::panic::catch_unwind(|| check_directives(&doc, inventory.name, None)).is_err());
}
