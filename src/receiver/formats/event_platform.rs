//! Akeneo Event Platform: one CloudEvents 1.0 event per request, structured mode
//! (the whole event is the JSON body), signed with the hex HMAC-SHA256 of the raw body in
//! `X-Akeneo-Signature-Primary` and, during a secret rotation, `X-Akeneo-Signature-Secondary`.
//!
//! Most events are thin (a uuid, or a product model code): they become
//! [`ChangeBody::NeedsFetch`] and the product is read from the PIM before it is applied.
//!
//! The scheme carries no signed timestamp, so the receiver cannot bound replay; the
//! CloudEvent id (the delivery id) lets the store drop a replayed event it still remembers.

use axum::http::HeaderMap;
use pimsync_connectors::{ChangeBody, ChangeOp, ProductChange, ProductKind};

use super::json::{Obj, Strictness, malformed, parse_body, quoted, snapshot, timed_delivery_id};
use super::{Parsed, Rejection, keep_headers};
use crate::config::SignatureEncoding;
use crate::receiver::signature::{SignatureError, decode_tag, header, verify_hmac_sha256};

pub const PRIMARY_HEADER: &str = "x-akeneo-signature-primary";
pub const SECONDARY_HEADER: &str = "x-akeneo-signature-secondary";

/// Passes when either signature header matches either secret. Akeneo signs with both
/// secrets during a rotation and pimsync may hold the old or the new one, so the pairing
/// of header and secret is not fixed.
pub fn verify(secrets: &[&[u8]], headers: &HeaderMap, body: &[u8]) -> Result<(), SignatureError> {
    let mut present = Vec::new();
    for name in [PRIMARY_HEADER, SECONDARY_HEADER] {
        if let Some(value) = header(headers, name)? {
            present.push((name, value));
        }
    }
    if present.is_empty() {
        return Err(SignatureError::MissingHeader(PRIMARY_HEADER.to_owned()));
    }
    let mut decoded_any = false;
    for (_, value) in &present {
        let Some(tag) = decode_tag(value, SignatureEncoding::Hex) else {
            continue;
        };
        decoded_any = true;
        if secrets
            .iter()
            .any(|key| verify_hmac_sha256(key, &[body], &tag))
        {
            return Ok(());
        }
    }
    if decoded_any {
        Err(SignatureError::Mismatch)
    } else {
        Err(SignatureError::InvalidHeader(present[0].0.to_owned()))
    }
}

/// What an event type means for the product.
enum Meaning {
    Upsert,
    Delta,
    Delete,
}

const TYPE_PREFIX: &str = "com.akeneo.pim.v1.";

fn meaning(event_type: &str) -> Option<(ProductKind, Meaning)> {
    let (kind, action) = match event_type.strip_prefix(TYPE_PREFIX)?.split_once('.')? {
        ("product", action) => (ProductKind::Product, action),
        ("product-model", action) => (ProductKind::ProductModel, action),
        _ => return None,
    };
    let meaning = match (kind, action) {
        (_, "created" | "updated") => Meaning::Upsert,
        (_, "updated.delta") => Meaning::Delta,
        (_, "deleted") => Meaning::Delete,
        _ => return None,
    };
    Some((kind, meaning))
}

/// Parses one CloudEvent. Its `id` is both the delivery id and the change's event id.
pub fn parse(headers: &HeaderMap, body: &[u8]) -> Result<Parsed, Rejection> {
    let root = parse_body(body)?;
    let event = Obj::new(&root, "")?;
    let spec_version = event.str("specversion")?;
    if spec_version != "1.0" {
        return Err(malformed(
            "specversion",
            format!(r#"expected "1.0", got {}"#, quoted(spec_version)),
        ));
    }
    let id = event.str("id")?;
    event.str("source")?;
    let event_type = event.str("type")?;
    let Some((kind, meaning)) = meaning(event_type) else {
        // A verified event of a type pimsync does not act on (a category, a family, a
        // newer version): acknowledged and dropped. Refusing it would make the Event
        // Platform retry it and, after enough failures, suspend the subscription — and
        // with it the product events.
        if event_type.starts_with("com.akeneo.pim.v1.product") {
            tracing::warn!(
                event_type,
                event_id = id,
                "product event type not handled; acknowledged without a change"
            );
        } else {
            tracing::debug!(
                event_type,
                event_id = id,
                "event type not about products; acknowledged"
            );
        }
        return Ok(Parsed {
            delivery_id: None,
            changes: Vec::new(),
            kept_headers: Vec::new(),
        });
    };
    let version = event
        .opt_micros("time")?
        .ok_or_else(|| malformed("time", "required"))?;
    event.opt_str("subject")?;
    let data = event.obj("data")?;

    let (key, uuid, body) = match kind {
        ProductKind::Product => {
            let product = data.obj("product")?;
            let uuid = product.str("uuid")?;
            let key = product.opt_str("identifier")?.filter(|k| !k.is_empty());
            let body = match meaning {
                Meaning::Delete => ChangeBody::None,
                Meaning::Delta if product.has("values") => {
                    ChangeBody::Partial(snapshot(&product, Strictness::Lenient)?)
                }
                Meaning::Upsert | Meaning::Delta => ChangeBody::NeedsFetch,
            };
            (key, Some(uuid), body)
        }
        ProductKind::ProductModel => {
            let model = data.obj("product_model")?;
            let code = model.str("code")?;
            if code.is_empty() {
                return Err(malformed(&model.field_path("code"), "must not be empty"));
            }
            let body = match meaning {
                Meaning::Delete => ChangeBody::None,
                Meaning::Upsert | Meaning::Delta => ChangeBody::NeedsFetch,
            };
            (Some(code), None, body)
        }
    };
    let op = match meaning {
        Meaning::Delete => ChangeOp::Delete,
        Meaning::Upsert | Meaning::Delta => ChangeOp::Upsert,
    };
    let change = ProductChange {
        key: key.map(str::to_owned),
        uuid: uuid.map(str::to_owned),
        kind,
        op,
        version,
        body,
        event_id: Some(id.to_owned()),
    };

    let mut names = vec!["content-type".to_owned(), "user-agent".to_owned()];
    let mut ce: Vec<String> = headers
        .keys()
        .map(|n| n.as_str().to_owned())
        .filter(|n| n.starts_with("ce-"))
        .collect();
    ce.sort();
    names.extend(ce);
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(Parsed {
        delivery_id: Some(timed_delivery_id(version, id)),
        changes: vec![change],
        kept_headers: keep_headers(headers, &names),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::config::{Secret, SourceFormat};
    use crate::receiver::formats::test_support::{headers, malformed as err, unauthorized};
    use crate::receiver::formats::{Inbound, verify_and_parse};
    use crate::receiver::signature::hmac_sha256;

    const PRIMARY: &[u8] = b"primary-secret";
    const SECONDARY: &[u8] = b"secondary-secret";
    const UUID: &str = "fc24e6c3-933c-4a93-8a81-e5c703d134d5";
    const THIN: &[u8] = br#"{"specversion":"1.0","id":"ev-1","source":"pim","type":"com.akeneo.pim.v1.product.created","time":"2024-05-14T09:02:14.918Z","subject":"fc24e6c3-933c-4a93-8a81-e5c703d134d5","data":{"product":{"uuid":"fc24e6c3-933c-4a93-8a81-e5c703d134d5"}}}"#;
    // Computed independently with THIN's bytes in the file `thin`:
    // python3 -c "import hmac,hashlib; print(hmac.new(b'primary-secret', open('thin','rb').read(), hashlib.sha256).hexdigest())"
    const THIN_PRIMARY: &str = "821de17d6e4e7df22c81514da2724b61c1c4bcd6af354760f6aab427b888dcc3";
    // The same with b'secondary-secret'.
    const THIN_SECONDARY: &str = "442ef53b912d59a3659e427f5b634d86015250dfd33e43b23a0f6512a402962b";

    fn format(secondary: bool) -> SourceFormat {
        SourceFormat::AkeneoEventPlatform {
            primary: Secret::new(PRIMARY),
            secondary: secondary.then(|| Secret::new(SECONDARY)),
        }
    }

    fn run(
        format: &SourceFormat,
        pairs: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Parsed, Rejection> {
        verify_and_parse(
            format,
            &Inbound {
                headers: &headers(pairs),
                body,
                now_unix: 0,
            },
        )
    }

    fn signed(event: &Value) -> Result<Parsed, Rejection> {
        let body = event.to_string();
        let sig = hex::encode(hmac_sha256(PRIMARY, &[body.as_bytes()]));
        run(
            &format(false),
            &[("X-AKENEO-SIGNATURE-PRIMARY", &sig)],
            body.as_bytes(),
        )
    }

    fn event(event_type: &str, data: Value) -> Value {
        json!({"specversion": "1.0", "id": "ev-2", "source": "pim", "type": event_type,
               "time": "2024-05-14T09:02:14Z", "data": data})
    }

    #[test]
    fn thin_created_needs_fetch() {
        let parsed = run(
            &format(false),
            &[
                ("X-AKENEO-SIGNATURE-PRIMARY", THIN_PRIMARY),
                ("Content-Type", "application/cloudevents+json"),
                ("ce-trace", "t1"),
                ("User-Agent", "Akeneo"),
            ],
            THIN,
        )
        .unwrap();
        assert_eq!(
            parsed.delivery_id.as_deref(),
            Some("2024-05-14T09:02:14.918000Z ev-1")
        );
        assert_eq!(
            parsed.changes,
            vec![ProductChange {
                key: None,
                uuid: Some(UUID.into()),
                kind: ProductKind::Product,
                op: ChangeOp::Upsert,
                version: 1_715_677_334_918_000,
                body: ChangeBody::NeedsFetch,
                event_id: Some("ev-1".into()),
            }]
        );
        assert_eq!(
            parsed.kept_headers,
            vec![
                (
                    "content-type".to_owned(),
                    "application/cloudevents+json".to_owned()
                ),
                ("user-agent".to_owned(), "Akeneo".to_owned()),
                ("ce-trace".to_owned(), "t1".to_owned()),
            ]
        );
    }

    #[test]
    fn either_header_may_carry_either_secret() {
        let both = format(true);
        assert!(run(&both, &[("X-AKENEO-SIGNATURE-PRIMARY", THIN_PRIMARY)], THIN).is_ok());
        assert!(
            run(
                &both,
                &[("X-AKENEO-SIGNATURE-SECONDARY", THIN_SECONDARY)],
                THIN
            )
            .is_ok()
        );
        assert!(
            run(
                &both,
                &[("X-AKENEO-SIGNATURE-PRIMARY", THIN_SECONDARY)],
                THIN
            )
            .is_ok()
        );
        assert!(
            run(
                &both,
                &[
                    ("X-AKENEO-SIGNATURE-PRIMARY", "00"),
                    ("X-AKENEO-SIGNATURE-SECONDARY", THIN_SECONDARY)
                ],
                THIN
            )
            .is_ok()
        );
        let primary_only = format(false);
        assert!(
            run(
                &primary_only,
                &[("X-AKENEO-SIGNATURE-SECONDARY", THIN_PRIMARY)],
                THIN
            )
            .is_ok()
        );
        // Without a configured secondary, the secondary secret's signature is worthless.
        assert_eq!(
            unauthorized(run(
                &primary_only,
                &[("X-AKENEO-SIGNATURE-SECONDARY", THIN_SECONDARY)],
                THIN
            )),
            "signature does not match"
        );
    }

    #[test]
    fn missing_invalid_or_wrong_signature_fails() {
        assert_eq!(
            unauthorized(run(&format(true), &[], THIN)),
            "missing x-akeneo-signature-primary header"
        );
        assert_eq!(
            unauthorized(run(
                &format(true),
                &[("X-AKENEO-SIGNATURE-PRIMARY", "sha256=zz")],
                THIN
            )),
            "invalid x-akeneo-signature-primary header"
        );
        let mut tampered = THIN.to_vec();
        tampered.pop();
        assert_eq!(
            unauthorized(run(
                &format(true),
                &[("X-AKENEO-SIGNATURE-PRIMARY", THIN_PRIMARY)],
                &tampered
            )),
            "signature does not match"
        );
    }

    #[test]
    fn delta_with_values_is_partial_and_without_needs_fetch() {
        let with_values = event(
            "com.akeneo.pim.v1.product.updated.delta",
            json!({"product": {
            "uuid": UUID, "identifier": "sku-1",
            "values": {"name": [{"locale": "en_US", "scope": null, "data": "Chair"}]}}}),
        );
        let change = &signed(&with_values).unwrap().changes[0];
        assert_eq!(
            (change.key.as_deref(), change.op),
            (Some("sku-1"), ChangeOp::Upsert)
        );
        let ChangeBody::Partial(s) = &change.body else {
            panic!("expected Partial, got {:?}", change.body)
        };
        assert_eq!(s.values["name"][0].data, json!("Chair"));
        assert_eq!(s.family, None);

        let without = event(
            "com.akeneo.pim.v1.product.updated.delta",
            json!({"product": {"uuid": UUID}}),
        );
        assert_eq!(
            signed(&without).unwrap().changes[0].body,
            ChangeBody::NeedsFetch
        );
    }

    #[test]
    fn deleted_products_and_models() {
        let deleted = event(
            "com.akeneo.pim.v1.product.deleted",
            json!({"product": {"uuid": UUID, "identifier": "sku-1"}}),
        );
        let change = &signed(&deleted).unwrap().changes[0];
        assert_eq!(
            (change.op, &change.body),
            (ChangeOp::Delete, &ChangeBody::None)
        );
        assert_eq!(
            (change.key.as_deref(), change.uuid.as_deref()),
            (Some("sku-1"), Some(UUID))
        );
        assert_eq!(change.version, 1_715_677_334_000_000);

        let model = event(
            "com.akeneo.pim.v1.product-model.deleted",
            json!({"product_model": {"code": "amor"}}),
        );
        let change = &signed(&model).unwrap().changes[0];
        assert_eq!(
            (change.kind, change.op, change.key.as_deref()),
            (ProductKind::ProductModel, ChangeOp::Delete, Some("amor"))
        );

        let model = event(
            "com.akeneo.pim.v1.product-model.updated",
            json!({"product_model": {"code": "amor"}}),
        );
        let change = &signed(&model).unwrap().changes[0];
        assert_eq!(
            (change.kind, &change.body, change.key.as_deref()),
            (
                ProductKind::ProductModel,
                &ChangeBody::NeedsFetch,
                Some("amor")
            )
        );
    }

    #[test]
    fn event_types_not_acted_on_are_acknowledged_without_a_change() {
        let data = json!({"product": {"uuid": UUID}});
        for event_type in [
            "com.akeneo.pim.v1.category.created",
            "com.akeneo.pim.v2.product.created",
            "com.akeneo.pim.v1.product.published",
        ] {
            let parsed = signed(&event(event_type, data.clone()))
                .unwrap_or_else(|e| panic!("{event_type}: {e:?}"));
            assert!(parsed.changes.is_empty(), "{event_type}");
            assert_eq!(
                parsed.delivery_id, None,
                "{event_type}: answered like a ping"
            );
        }
        // A product model's delta carries no values: the model is fetched.
        let model = json!({"product_model": {"code": "amor"}});
        let parsed = signed(&event(
            "com.akeneo.pim.v1.product-model.updated.delta",
            model,
        ))
        .unwrap();
        assert_eq!(parsed.changes[0].body, ChangeBody::NeedsFetch);
        assert_eq!(parsed.changes[0].key.as_deref(), Some("amor"));
    }

    #[test]
    fn bad_fields_are_malformed() {
        let data = json!({"product": {"uuid": UUID}});
        let mut v = event("com.akeneo.pim.v1.product.created", data.clone());
        v["specversion"] = json!("0.3");
        assert_eq!(err(signed(&v)), r#"specversion: expected "1.0", got "0.3""#);
        let mut v = event("com.akeneo.pim.v1.product.created", data.clone());
        v["time"] = json!("14/05/2024");
        assert_eq!(
            err(signed(&v)),
            r#"time: expected an RFC 3339 timestamp, got "14/05/2024""#
        );
        let mut v = event("com.akeneo.pim.v1.product.created", data);
        v.as_object_mut().unwrap().remove("id");
        assert_eq!(err(signed(&v)), "id: required");
        assert_eq!(
            err(signed(&event(
                "com.akeneo.pim.v1.product.created",
                json!({"product": {}})
            ))),
            "data.product.uuid: required"
        );
        assert_eq!(
            err(signed(&event(
                "com.akeneo.pim.v1.product-model.created",
                json!({"product": {"uuid": UUID}})
            ))),
            "data.product_model: required"
        );
    }
}
