//! Akeneo PIM Events API (the "event subscription" of a connection).
//!
//! Akeneo POSTs `{"events": [...]}`, up to 10 events per request, with
//! `X-Akeneo-Request-Timestamp` (Unix seconds) and `X-Akeneo-Request-Signature`, the hex
//! HMAC-SHA256 of `"<timestamp>.<raw body>"` under the connection's secret. Each event
//! carries the whole product (or product model) as the REST API returns it, so it becomes
//! a full snapshot; removals carry only the key.
//!
//! When a connection's event subscription is saved, Akeneo checks the URL with a signed
//! request whose body is empty; it is acknowledged with no changes.

use std::time::Duration;

use axum::http::HeaderMap;
use pimsync_connectors::{ChangeBody, ChangeOp, ProductChange, ProductKind};
use serde_json::Value;

use super::json::{
    Obj, Strictness, malformed, micros_since_epoch, parse_body, quoted, snapshot, timed_delivery_id,
};
use super::{Parsed, Rejection, keep_headers};
use crate::config::SignatureEncoding;
use crate::receiver::signature::{
    SignatureError, check_timestamp, decode_tag, required_header, verify_hmac_sha256,
};

pub const TIMESTAMP_HEADER: &str = "x-akeneo-request-timestamp";
pub const SIGNATURE_HEADER: &str = "x-akeneo-request-signature";
/// Akeneo batches at most this many events; more means the body is not what Akeneo sends.
pub const MAX_EVENTS: usize = 10;

/// Checks the timestamp window, then the signature over `"<timestamp>.<body>"`.
pub fn verify(
    secret: &[u8],
    headers: &HeaderMap,
    body: &[u8],
    now_unix: i64,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let timestamp = required_header(headers, TIMESTAMP_HEADER)?;
    let signature = required_header(headers, SIGNATURE_HEADER)?;
    check_timestamp(TIMESTAMP_HEADER, timestamp, now_unix, tolerance)?;
    let tag = decode_tag(signature, SignatureEncoding::Hex)
        .ok_or_else(|| SignatureError::InvalidHeader(SIGNATURE_HEADER.to_owned()))?;
    // The timestamp is signed exactly as sent (no re-formatting of the parsed number).
    if verify_hmac_sha256(secret, &[timestamp.as_bytes(), b".", body], &tag) {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// Parses an Events API body. The delivery id is the first event's time followed by the
/// event ids joined with `,` (see `timed_delivery_id`): Akeneo retries a failed request
/// with the same events, so the same id.
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Rejection> {
    let kept_headers = keep_headers(headers, &[TIMESTAMP_HEADER, "content-type", "user-agent"]);
    if body.is_empty() {
        return Ok(Parsed {
            delivery_id: None,
            changes: Vec::new(),
            kept_headers,
        });
    }
    // The one-pass parse takes what the walk would accept; the walk decides the rest.
    let (changes, delivery_id) = match super::akeneo_body::parse(body) {
        Some(parsed) => parsed,
        None => walk(body)?,
    };
    Ok(Parsed {
        delivery_id: Some(delivery_id),
        changes,
        kept_headers,
    })
}

/// The changes and delivery id of a non-empty body, through a `Value` tree: the reference
/// for `akeneo_body`, and the maker of every error message.
pub(super) fn walk(body: &[u8]) -> Result<(Vec<ProductChange>, String), Rejection> {
    let root = parse_body(body)?;
    let root = Obj::new(&root, "")?;
    let Some(events) = root.opt_array("events")? else {
        return Err(malformed("events", "required"));
    };
    if events.is_empty() {
        return Err(malformed("events", "must not be empty"));
    }
    if events.len() > MAX_EVENTS {
        return Err(malformed(
            "events",
            format!(
                "{} events, at most {MAX_EVENTS} allowed per request",
                events.len()
            ),
        ));
    }
    let mut changes = Vec::with_capacity(events.len());
    let mut event_ids = Vec::with_capacity(events.len());
    let mut first_event_at = None;
    for (i, event) in events.iter().enumerate() {
        let (change, event_at) = parse_event(event, &format!("events[{i}]"))?;
        first_event_at.get_or_insert(event_at);
        event_ids.push(change.event_id.clone().unwrap_or_default());
        changes.push(change);
    }
    let event_ids = event_ids.join(",");
    let delivery_id = match first_event_at {
        Some(at) => timed_delivery_id(at, &event_ids),
        None => event_ids,
    };
    Ok((changes, delivery_id))
}

/// What an event's `action` does to what; `None` for an action Akeneo does not send.
pub(super) fn kind_and_op(action: &str) -> Option<(ProductKind, ChangeOp)> {
    match action {
        "product.created" | "product.updated" => Some((ProductKind::Product, ChangeOp::Upsert)),
        "product.removed" => Some((ProductKind::Product, ChangeOp::Delete)),
        "product_model.created" | "product_model.updated" => {
            Some((ProductKind::ProductModel, ChangeOp::Upsert))
        }
        "product_model.removed" => Some((ProductKind::ProductModel, ChangeOp::Delete)),
        _ => None,
    }
}

/// One event, and its `event_datetime` in microseconds.
fn parse_event(value: &Value, path: &str) -> Result<(ProductChange, i64), Rejection> {
    let event = Obj::new(value, path)?;
    let action = event.str("action")?;
    let Some((kind, op)) = kind_and_op(action) else {
        return Err(malformed(
            &event.field_path("action"),
            format!("unknown action {}", quoted(action)),
        ));
    };
    let event_id = event.str("event_id")?;
    let datetime = event.str("event_datetime")?;
    let event_micros = micros_since_epoch(datetime).ok_or_else(|| {
        malformed(
            &event.field_path("event_datetime"),
            format!(
                "expected an ISO 8601 date-time with offset, got {}",
                quoted(datetime)
            ),
        )
    })?;
    let resource = event.obj("data")?.obj("resource")?;
    let (key, uuid) = identity(&resource, kind)?;
    // `updated` moves on every save of the product, so it orders the events of one product;
    // a removal has no resource timestamp and takes the event's.
    let (version, body) = match op {
        ChangeOp::Delete => (event_micros, ChangeBody::None),
        ChangeOp::Upsert => (
            resource.opt_micros("updated")?.unwrap_or(event_micros),
            ChangeBody::Full(snapshot(&resource, Strictness::Lenient)?),
        ),
    };
    let change = ProductChange {
        key,
        uuid,
        kind,
        op,
        version,
        body,
        event_id: Some(event_id.to_owned()),
    };
    Ok((change, event_micros))
}

/// The key and uuid of a REST resource. Products are keyed by identifier (may be absent
/// since Akeneo 7 allows products without one: the uuid then stands in), product models by
/// their code.
fn identity(
    resource: &Obj<'_>,
    kind: ProductKind,
) -> Result<(Option<String>, Option<String>), Rejection> {
    let key_field = match kind {
        ProductKind::Product => "identifier",
        ProductKind::ProductModel => "code",
    };
    let key = resource.opt_str(key_field)?;
    if key == Some("") {
        return Err(malformed(
            &resource.field_path(key_field),
            "must not be empty",
        ));
    }
    let uuid = resource.opt_str("uuid")?;
    if key.is_none() && (kind == ProductKind::ProductModel || uuid.is_none()) {
        let needed = match kind {
            ProductKind::Product => "identifier or uuid required",
            ProductKind::ProductModel => "code required",
        };
        return Err(malformed(resource.path(), needed));
    }
    Ok((key.map(str::to_owned), uuid.map(str::to_owned)))
}

/// An Akeneo REST resource — a product (`GET /api/rest/v1/products-uuid/{uuid}`) or a
/// product model (`GET /api/rest/v1/product-models/{code}`), the same shape the Events API
/// embeds — as a full upsert whose version is the resource's `updated` time. The PIM pull
/// turns what it fetches into changes with this, exactly as webhooks are.
pub(crate) fn resource_upsert(
    resource: &Value,
    path: &str,
    kind: ProductKind,
) -> Result<ProductChange, Rejection> {
    let resource = Obj::new(resource, path)?;
    let (key, uuid) = identity(&resource, kind)?;
    let version = resource
        .opt_micros("updated")?
        .ok_or_else(|| malformed(&resource.field_path("updated"), "required"))?;
    Ok(ProductChange {
        key,
        uuid,
        kind,
        op: ChangeOp::Upsert,
        version,
        body: ChangeBody::Full(snapshot(&resource, Strictness::Lenient)?),
        event_id: None,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{Secret, SourceFormat};
    use crate::receiver::formats::test_support::{headers, malformed as err, unauthorized};
    use crate::receiver::formats::{Inbound, parse_only, verify_and_parse};
    use crate::receiver::signature::hmac_sha256;

    // Secret and timestamp from Akeneo's documentation of the request signature.
    const SECRET: &[u8] = b"3ha6eonoa9icsckw8kccos084w0c0000g08g40oo4kww0gc8w4";
    const TIMESTAMP: i64 = 1602565368;
    const BODY: &[u8] = include_bytes!("testdata/akeneo_events.json");
    // Computed independently, in src/receiver/formats/testdata:
    // python3 -c "import hmac,hashlib; print(hmac.new(b'3ha6eonoa9icsckw8kccos084w0c0000g08g40oo4kww0gc8w4',
    //   b'1602565368.' + open('akeneo_events.json','rb').read(), hashlib.sha256).hexdigest())"
    const BODY_SIGNATURE: &str = "f942a808ef61d703d633042997a1dea23d4cec2c5cba7f9363c661a3e578b1ab";
    // The same over b'1602565368.' alone (the empty-body check request).
    const EMPTY_SIGNATURE: &str =
        "cd7da1f054db7c643ff8d01cbf4b2010ef9f100d2a21815bd64dfc61da2d5707";

    fn format() -> SourceFormat {
        SourceFormat::Akeneo {
            secret: Secret::new(SECRET),
            tolerance: Duration::from_secs(300),
        }
    }

    fn request(
        signature: &str,
        timestamp: i64,
        body: &[u8],
        now: i64,
    ) -> Result<Parsed, Rejection> {
        let h = headers(&[
            ("X-Akeneo-Request-Timestamp", &timestamp.to_string()),
            ("X-Akeneo-Request-Signature", signature),
            ("Content-Type", "application/json"),
            ("User-Agent", "AkeneoEvents/1.0"),
        ]);
        verify_and_parse(
            &format(),
            &Inbound {
                headers: &h,
                body,
                now_unix: now,
            },
        )
    }

    /// Signs an arbitrary body with the module under test's own HMAC (the documented
    /// vectors above pin that HMAC down independently).
    fn signed(body: &Value) -> Result<Parsed, Rejection> {
        let body = body.to_string();
        let sig = hex::encode(hmac_sha256(
            SECRET,
            &[TIMESTAMP.to_string().as_bytes(), b".", body.as_bytes()],
        ));
        request(&sig, TIMESTAMP, body.as_bytes(), TIMESTAMP)
    }

    fn event(action: &str, resource: Value) -> Value {
        json!({"action": action, "event_id": "e-1", "event_datetime": "2020-10-13T05:02:48+00:00",
               "author": "julia", "author_type": "ui", "pim_source": "https://pim", "data": {"resource": resource}})
    }

    #[test]
    fn documented_secret_signs_realistic_body() {
        let parsed = request(BODY_SIGNATURE, TIMESTAMP, BODY, TIMESTAMP).unwrap();
        assert_eq!(
            parsed.delivery_id.as_deref(),
            Some(
                "2020-10-13T05:02:47.000000Z c8741e6b-7a35-4e97-a8c5-ab9c2bd4df81,7f0a2c9e-5b1d-4e3f-9a8b-6c5d4e3f2a1b"
            )
        );
        assert_eq!(
            parsed.kept_headers,
            vec![
                (TIMESTAMP_HEADER.to_owned(), TIMESTAMP.to_string()),
                ("content-type".to_owned(), "application/json".to_owned()),
                ("user-agent".to_owned(), "AkeneoEvents/1.0".to_owned()),
            ]
        );
        let [updated, removed] = &parsed.changes[..] else {
            panic!("two changes expected")
        };

        assert_eq!(updated.key.as_deref(), Some("1111111171"));
        assert_eq!(
            updated.uuid.as_deref(),
            Some("fc24e6c3-933c-4a93-8a81-e5c703d134d5")
        );
        assert_eq!(updated.kind, ProductKind::Product);
        assert_eq!(updated.op, ChangeOp::Upsert);
        // "updated": "2020-10-13T07:02:46.123456+02:00"
        assert_eq!(updated.version, 1_602_565_366_123_456);
        assert_eq!(
            updated.event_id.as_deref(),
            Some("c8741e6b-7a35-4e97-a8c5-ab9c2bd4df81")
        );
        let ChangeBody::Full(s) = &updated.body else {
            panic!("expected Full, got {:?}", updated.body)
        };
        assert_eq!(s.family.as_deref(), Some("clothing"));
        assert_eq!(s.categories, ["master_men_blazers", "supplier_zaro"]);
        assert_eq!(s.enabled, Some(true));
        assert_eq!(s.parent.as_deref(), Some("amor"));
        assert_eq!(
            s.values.keys().collect::<Vec<_>>(),
            ["description", "name", "price", "size", "weight"]
        );
        assert_eq!(s.values["name"][0].data, json!("Amor blazer"));
        let fr = &s.values["description"][1];
        assert_eq!(
            (fr.locale.as_deref(), fr.scope.as_deref()),
            (Some("fr_FR"), Some("ecommerce"))
        );
        assert_eq!(fr.data, json!("Un blazer ajusté."));
        assert_eq!(
            s.values["price"][0].data[1],
            json!({"amount": "219.00", "currency": "USD"})
        );
        assert_eq!(s.values["size"][0].data, json!("m"));

        assert_eq!(removed.key.as_deref(), Some("apollon"));
        assert_eq!(removed.uuid, None);
        assert_eq!(removed.kind, ProductKind::ProductModel);
        assert_eq!(removed.op, ChangeOp::Delete);
        assert_eq!(removed.body, ChangeBody::None);
        // No resource timestamp: event_datetime "2020-10-13T05:02:48+00:00".
        assert_eq!(removed.version, 1_602_565_368_000_000);

        // Replay of the stored body gives the same result without a signature.
        let stored = headers(&[
            ("x-akeneo-request-timestamp", "1602565368"),
            ("content-type", "application/json"),
            ("user-agent", "AkeneoEvents/1.0"),
        ]);
        assert_eq!(parse_only(&format(), &stored, BODY).unwrap(), parsed);
    }

    #[test]
    fn wrong_signature_fails_without_echoing_it() {
        let mut wrong = BODY_SIGNATURE.to_owned();
        wrong.replace_range(0..1, "0");
        let reason = unauthorized(request(&wrong, TIMESTAMP, BODY, TIMESTAMP));
        assert_eq!(reason, "signature does not match");
        // The body is part of what is signed.
        let mut tampered = BODY.to_vec();
        tampered.push(b' ');
        assert_eq!(
            unauthorized(request(BODY_SIGNATURE, TIMESTAMP, &tampered, TIMESTAMP)),
            "signature does not match"
        );
        assert_eq!(
            unauthorized(request("xyz", TIMESTAMP, BODY, TIMESTAMP)),
            "invalid x-akeneo-request-signature header"
        );
        let h = headers(&[("X-Akeneo-Request-Timestamp", "1602565368")]);
        let missing = verify_and_parse(
            &format(),
            &Inbound {
                headers: &h,
                body: BODY,
                now_unix: TIMESTAMP,
            },
        );
        assert_eq!(
            unauthorized(missing),
            "missing x-akeneo-request-signature header"
        );
    }

    #[test]
    fn stale_or_future_timestamp_fails() {
        assert!(request(BODY_SIGNATURE, TIMESTAMP, BODY, TIMESTAMP + 300).is_ok());
        assert_eq!(
            unauthorized(request(BODY_SIGNATURE, TIMESTAMP, BODY, TIMESTAMP + 301)),
            "timestamp too old"
        );
        assert_eq!(
            unauthorized(request(BODY_SIGNATURE, TIMESTAMP, BODY, TIMESTAMP - 301)),
            "timestamp too far in the future"
        );
    }

    #[test]
    fn empty_body_check_request_is_acknowledged() {
        let parsed = request(EMPTY_SIGNATURE, TIMESTAMP, b"", TIMESTAMP).unwrap();
        assert_eq!(parsed.delivery_id, None);
        assert!(parsed.changes.is_empty());
        // It is still verified.
        assert_eq!(
            unauthorized(request(BODY_SIGNATURE, TIMESTAMP, b"", TIMESTAMP)),
            "signature does not match"
        );
    }

    #[test]
    fn at_most_ten_events() {
        let resource = json!({"code": "m"});
        let ten = json!({"events": vec![event("product_model.removed", resource.clone()); 10]});
        assert_eq!(signed(&ten).unwrap().changes.len(), 10);
        let eleven = json!({"events": vec![event("product_model.removed", resource); 11]});
        assert_eq!(
            err(signed(&eleven)),
            "events: 11 events, at most 10 allowed per request"
        );
        assert_eq!(
            err(signed(&json!({"events": []}))),
            "events: must not be empty"
        );
        assert_eq!(err(signed(&json!({}))), "events: required");
    }

    #[test]
    fn unknown_action_names_the_event() {
        let body = json!({"events": [
            event("product.removed", json!({"identifier": "a"})),
            event("product.removed", json!({"identifier": "b"})),
            event("foo", json!({"identifier": "c"})),
        ]});
        assert_eq!(
            err(signed(&body)),
            r#"events[2].action: unknown action "foo""#
        );
    }

    #[test]
    fn product_model_upsert_and_product_removal_with_uuid() {
        let model = event(
            "product_model.updated",
            json!({
            "code": "amor", "family": "clothing", "family_variant": "clothing_color_size",
            "parent": null, "categories": ["men"], "values": {"name": [{"locale": null, "scope": null, "data": "Amor"}]},
            "created": "2017-10-04T18:04:10+02:00", "updated": "2020-10-13T05:00:00+00:00", "associations": {}}),
        );
        let removal = event(
            "product.removed",
            json!({"identifier": "sku-9", "uuid": "u-9"}),
        );
        let thin = event("product.created", json!({"uuid": "u-10", "values": {}}));
        let parsed = signed(&json!({"events": [model, removal, thin]})).unwrap();
        let c = &parsed.changes;
        assert_eq!(
            (c[0].key.as_deref(), c[0].kind, c[0].version),
            (
                Some("amor"),
                ProductKind::ProductModel,
                1_602_565_200_000_000
            )
        );
        let ChangeBody::Full(s) = &c[0].body else {
            panic!("expected Full")
        };
        assert_eq!(
            (s.family.as_deref(), s.parent.as_deref(), s.enabled),
            (Some("clothing"), None, None)
        );
        assert_eq!(
            (c[1].key.as_deref(), c[1].uuid.as_deref(), c[1].op),
            (Some("sku-9"), Some("u-9"), ChangeOp::Delete)
        );
        // No `updated` in the resource: the event time orders it.
        assert_eq!(
            (c[2].key.as_deref(), c[2].uuid.as_deref(), c[2].version),
            (None, Some("u-10"), 1_602_565_368_000_000)
        );
        assert_eq!(
            parsed.delivery_id.as_deref(),
            Some("2020-10-13T05:02:48.000000Z e-1,e-1,e-1")
        );
    }

    #[test]
    fn malformed_events_name_the_field() {
        let one = |e: Value| err(signed(&json!({"events": [e]})));
        assert_eq!(
            one(event("product.updated", json!({"values": {}}))),
            "events[0].data.resource: identifier or uuid required"
        );
        assert_eq!(
            one(event("product_model.removed", json!({"uuid": "u"}))),
            "events[0].data.resource: code required"
        );
        assert_eq!(
            one(event("product.updated", json!({"identifier": ""}))),
            "events[0].data.resource.identifier: must not be empty"
        );
        assert_eq!(
            one(event(
                "product.updated",
                json!({"identifier": "a", "updated": "13/10/2020"})
            )),
            r#"events[0].data.resource.updated: expected an RFC 3339 timestamp, got "13/10/2020""#
        );
        assert_eq!(
            one(event(
                "product.updated",
                json!({"identifier": "a", "values": {"name": [{"locale": null}]}})
            )),
            "events[0].data.resource.values.name[0].data: required"
        );
        let mut no_id = event("product.removed", json!({"identifier": "a"}));
        no_id.as_object_mut().unwrap().remove("event_id");
        assert_eq!(one(no_id), "events[0].event_id: required");
        let mut bad_time = event("product.removed", json!({"identifier": "a"}));
        bad_time["event_datetime"] = json!("yesterday");
        assert_eq!(
            one(bad_time),
            r#"events[0].event_datetime: expected an ISO 8601 date-time with offset, got "yesterday""#
        );
        let mut no_data = event("product.removed", json!({}));
        no_data.as_object_mut().unwrap().remove("data");
        assert_eq!(one(no_data), "events[0].data: required");
    }
}
