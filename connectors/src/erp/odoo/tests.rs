use std::time::Duration;

use serde_json::{Value, json};

use super::fake::{self, Shared};
use super::*;
use crate::mapping::FieldSource;
use crate::product::{AttributeValue, ProductKind};

fn product(name: &str, price: &str) -> Snapshot {
    let mut s = Snapshot::default();
    let value = |data: Value| {
        vec![AttributeValue {
            locale: None,
            scope: None,
            data,
        }]
    };
    s.values.insert("title".into(), value(json!(name)));
    s.values.insert(
        "price".into(),
        value(json!([{"amount": price, "currency": "EUR"}])),
    );
    s.values.insert("family_cat".into(), value(json!("Chairs")));
    s
}

fn mapping() -> Mapping {
    let mut m = Mapping::default();
    m.fields
        .insert("name".into(), FieldSource::attribute("title"));
    m.fields.insert(
        "list_price".into(),
        FieldSource {
            currency: Some("EUR".into()),
            ..FieldSource::attribute("price")
        },
    );
    m
}

async fn setup(adjust: impl FnOnce(&mut OdooSettings)) -> (OdooConnector, Shared) {
    let (url, state) = fake::start().await;
    let mut settings = OdooSettings::new(&url, "odoo-api-key");
    settings.database = Some("prod".into());
    adjust(&mut settings);
    let c = connector(settings, mapping(), Duration::from_millis(500)).unwrap();
    (c, state)
}

async fn upsert(
    c: &OdooConnector,
    key: &str,
    s: &Snapshot,
    ids: &RemoteIds,
) -> Result<Applied, ApplyError> {
    c.apply(ApplyRequest {
        target: "odoo",
        product_key: key,
        desired: Desired::Upsert {
            kind: ProductKind::Product,
            snapshot: s,
            variants: &[],
        },
        remote_ids: ids,
        idempotency_key: "pimsync-k",
        attempt: 1,
        change: Default::default(),
    })
    .await
}

async fn delete(c: &OdooConnector, key: &str, ids: &RemoteIds) -> Result<Applied, ApplyError> {
    c.apply(ApplyRequest {
        target: "odoo",
        product_key: key,
        desired: Desired::Delete,
        remote_ids: ids,
        idempotency_key: "pimsync-d",
        attempt: 1,
        change: Default::default(),
    })
    .await
}

fn templates(state: &Shared) -> Vec<(i64, serde_json::Map<String, Value>)> {
    state.lock().unwrap().records("product.template")
}

#[tokio::test]
async fn create_then_update_then_delete() {
    let (c, state) = setup(|_| {}).await;
    let none = RemoteIds::new();
    let applied = upsert(&c, "SKU 1", &product("Chair", "49.90"), &none)
        .await
        .unwrap();
    assert_eq!(
        state.lock().unwrap().calls(),
        [
            "ir.model.data.search_read",
            "product.template.search_read",
            "product.template.create",
            "ir.model.data.create"
        ]
    );
    let records = templates(&state);
    assert_eq!(records.len(), 1);
    let (id, record) = &records[0];
    assert_eq!(record["name"], json!("Chair"));
    assert_eq!(record["list_price"], json!(49.9));
    assert_eq!(record["default_code"], json!("SKU 1"));
    assert_eq!(applied.remote_ids[REMOTE_ID], id.to_string());
    assert_eq!(applied.remote_ids[REMOTE_MODEL], "product.template");
    {
        let s = state.lock().unwrap();
        let xmlids = s.records("ir.model.data");
        assert_eq!(xmlids.len(), 1);
        let row = &xmlids[0].1;
        assert_eq!(row["module"], json!("pimsync"));
        assert_eq!(row["name"], json!("template_SKU_201"));
        assert_eq!(row["res_id"], json!(id));
        assert_eq!(row["noupdate"], json!(true));
        let request = &s.requests[0];
        assert_eq!(
            request.authorization.as_deref(),
            Some("bearer odoo-api-key")
        );
        assert_eq!(request.database.as_deref(), Some("prod"));
        // Named arguments, as JSON-2 expects.
        assert_eq!(s.requests[2].body["vals_list"][0]["name"], json!("Chair"));
        assert_eq!(
            s.requests[1].body["domain"],
            json!([["default_code", "=", "SKU 1"]])
        );
        assert_eq!(s.requests[1].body["context"]["active_test"], json!(false));
    }

    // An update with the remembered id is one write.
    state.lock().unwrap().requests.clear();
    let again = upsert(&c, "SKU 1", &product("Chair v2", "45"), &applied.remote_ids)
        .await
        .unwrap();
    assert_eq!(again, applied);
    assert_eq!(state.lock().unwrap().calls(), ["product.template.write"]);
    assert_eq!(templates(&state)[0].1["name"], json!("Chair v2"));

    // Without remembered ids (a resync after the store was lost) the external id finds it.
    state.lock().unwrap().requests.clear();
    upsert(&c, "SKU 1", &product("Chair v3", "45"), &none)
        .await
        .unwrap();
    assert_eq!(
        state.lock().unwrap().calls(),
        ["ir.model.data.search_read", "product.template.write"]
    );

    // Deleting archives, keeps the id; upserting again reactivates the same record.
    let gone = delete(&c, "SKU 1", &applied.remote_ids).await.unwrap();
    assert_eq!(gone, applied);
    assert_eq!(templates(&state)[0].1["active"], json!(false));
    upsert(&c, "SKU 1", &product("Chair", "45"), &none)
        .await
        .unwrap();
    let records = templates(&state);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].1["active"], json!(true));
}

#[tokio::test]
async fn unlink_on_delete_removes_the_record_and_forgets_its_id() {
    let (c, state) = setup(|s| s.on_delete = OnDelete::Unlink).await;
    let applied = upsert(&c, "A", &product("A", "1"), &RemoteIds::new())
        .await
        .unwrap();
    let gone = delete(&c, "A", &applied.remote_ids).await.unwrap();
    assert_eq!(gone, Applied::default());
    assert!(templates(&state).is_empty());
    assert!(state.lock().unwrap().records("ir.model.data").is_empty());
    // Deleting again (a retry after a lost response) finds nothing and succeeds.
    assert_eq!(
        delete(&c, "A", &applied.remote_ids).await.unwrap(),
        Applied::default()
    );
    assert_eq!(
        delete(&c, "A", &RemoteIds::new()).await.unwrap(),
        Applied::default()
    );
}

#[tokio::test]
async fn a_lost_create_response_does_not_create_twice() {
    let (c, state) = setup(|_| {}).await;
    state
        .lock()
        .unwrap()
        .lose_response
        .push(("product.template".into(), "create".into()));
    let none = RemoteIds::new();
    let first = upsert(&c, "SKU-1", &product("Chair", "10"), &none).await;
    assert!(
        matches!(first, Err(ApplyError::Retryable { .. })),
        "{first:?}"
    );
    assert_eq!(templates(&state).len(), 1, "the create committed");
    assert!(state.lock().unwrap().records("ir.model.data").is_empty());

    // The retry finds the record by its key field, links it and writes it.
    let retry = upsert(&c, "SKU-1", &product("Chair", "10"), &none)
        .await
        .unwrap();
    let records = templates(&state);
    assert_eq!(records.len(), 1, "no second record");
    assert_eq!(retry.remote_ids[REMOTE_ID], records[0].0.to_string());
    let s = state.lock().unwrap();
    assert_eq!(s.records("ir.model.data").len(), 1);
    assert!(!s.calls()[4..].contains(&"product.template.create".to_string()));
}

#[tokio::test]
async fn a_lost_link_response_does_not_create_twice() {
    let (c, state) = setup(|_| {}).await;
    state
        .lock()
        .unwrap()
        .lose_response
        .push(("ir.model.data".into(), "create".into()));
    let none = RemoteIds::new();
    assert!(upsert(&c, "K", &product("K", "1"), &none).await.is_err());
    upsert(&c, "K", &product("K", "1"), &none).await.unwrap();
    assert_eq!(templates(&state).len(), 1);
    assert_eq!(state.lock().unwrap().records("ir.model.data").len(), 1);
}

#[tokio::test]
async fn existing_records_are_adopted_unless_ambiguous() {
    let (c, state) = setup(|_| {}).await;
    let existing = state.lock().unwrap().insert(
        "product.template",
        json!({"name": "Old", "default_code": "OLD-1"}),
    );
    let applied = upsert(&c, "OLD-1", &product("New", "1"), &RemoteIds::new())
        .await
        .unwrap();
    assert_eq!(applied.remote_ids[REMOTE_ID], existing.to_string());
    assert_eq!(templates(&state).len(), 1);

    for _ in 0..2 {
        state.lock().unwrap().insert(
            "product.template",
            json!({"name": "Dup", "default_code": "DUP"}),
        );
    }
    let err = upsert(&c, "DUP", &product("Dup", "1"), &RemoteIds::new())
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Permanent { .. }), "{err:?}");
    assert!(
        err.message().contains("several product.template records"),
        "{err:?}"
    );
}

#[tokio::test]
async fn errors_are_mapped() {
    let (c, state) = setup(|_| {}).await;
    let applied = upsert(&c, "E", &product("E", "1"), &RemoteIds::new())
        .await
        .unwrap();
    let fail = |status: u16, name: &str, message: &str| {
        state.lock().unwrap().fail.push((
            "product.template".into(),
            "write".into(),
            status,
            json!({"name": name, "message": message, "arguments": [message], "context": {}, "debug": "Traceback"}),
        ));
    };
    fail(
        422,
        "odoo.exceptions.ValidationError",
        "The barcode must be unique",
    );
    let err = upsert(&c, "E", &product("E", "1"), &applied.remote_ids)
        .await
        .unwrap_err();
    assert_eq!(
        err,
        ApplyError::permanent(
            "product.template.write: HTTP 422: odoo.exceptions.ValidationError: The barcode must be unique"
        )
    );
    fail(
        500,
        "psycopg2.errors.SerializationFailure",
        "could not serialize access",
    );
    let err = upsert(&c, "E", &product("E", "1"), &applied.remote_ids)
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Retryable { .. }), "{err:?}");
    fail(401, "werkzeug.exceptions.Unauthorized", "Invalid apikey");
    let err = upsert(&c, "E", &product("E", "1"), &applied.remote_ids)
        .await
        .unwrap_err();
    assert!(matches!(err, ApplyError::Permanent { .. }), "{err:?}");

    // A remembered id whose record was deleted in Odoo: found again or created anew.
    let mut stale = applied.remote_ids.clone();
    stale.insert(REMOTE_ID.into(), "9999".into());
    let again = upsert(&c, "E", &product("E", "1"), &stale).await.unwrap();
    assert_eq!(again, applied);
}

#[tokio::test]
async fn categories_resolve_by_name_once_or_by_configured_id() {
    let (url, state) = fake::start().await;
    let categ = state.lock().unwrap().insert(
        "product.category",
        json!({"name": "Chairs", "complete_name": "All / Chairs"}),
    );
    let mut m = mapping();
    m.fields
        .insert("categ".into(), FieldSource::attribute("family_cat"));
    let c = connector(
        OdooSettings::new(&url, "k"),
        m.clone(),
        Duration::from_secs(5),
    )
    .unwrap();
    for key in ["C1", "C2"] {
        upsert(&c, key, &product("C", "1"), &RemoteIds::new())
            .await
            .unwrap();
    }
    let records = templates(&state);
    assert!(records.iter().all(|(_, r)| r["categ_id"] == json!(categ)));
    let lookups = state
        .lock()
        .unwrap()
        .calls()
        .iter()
        .filter(|c| *c == "product.category.search_read")
        .count();
    assert_eq!(lookups, 1, "resolved once");

    let mut settings = OdooSettings::new(&url, "k");
    settings.categories.insert("Chairs".into(), 77);
    let c = connector(settings, m, Duration::from_secs(5)).unwrap();
    upsert(&c, "C3", &product("C", "1"), &RemoteIds::new())
        .await
        .unwrap();
    assert_eq!(templates(&state).last().unwrap().1["categ_id"], json!(77));
}

#[test]
fn settings_debug_hides_the_api_key() {
    let shown = format!("{:?}", OdooSettings::new("https://odoo", "very-secret"));
    assert!(!shown.contains("very-secret"), "{shown}");
}

#[test]
fn the_key_field_cannot_be_mapped() {
    let mut m = mapping();
    m.fields
        .insert("default_code".into(), FieldSource::attribute("sku"));
    let settings = OdooSettings::new("https://odoo", "k");
    assert!(connector(settings, m, Duration::from_secs(1)).is_err());
}
