//! `[targets.odoo]` and `[targets.rest]`: the ERP connectors' settings, with secrets
//! resolved into the plain strings the connectors crate takes.

use std::collections::BTreeMap;

use pimsync_connectors::erp::odoo::{MODELS, OdooSettings, OnDelete};
use pimsync_connectors::erp::rest::{
    ClientAuth, DEFAULT_IDEMPOTENCY_HEADER, OAuth2Settings, RestAuth, RestOperation, RestSettings,
    SessionSettings,
};

use super::super::reader::Section;
use super::super::{Mapping, TargetKind};
use super::check_base_url;

const AUTH_TYPES: &[&str] = &["none", "bearer", "basic", "oauth2", "session"];

/// A secret as text: the connectors send secrets in HTTP headers and JSON.
fn secret(s: &mut Section<'_, '_>, key: &'static str, required: bool) -> Option<String> {
    let value = if required {
        s.secret(key)
    } else {
        s.optional_secret(key)
    }?;
    match String::from_utf8(value.expose().to_vec()) {
        Ok(text) => Some(text),
        Err(_) => {
            s.invalid(key, "secret must be UTF-8 text");
            None
        }
    }
}

pub(super) fn odoo(mut s: Section<'_, '_>) -> Option<TargetKind> {
    let base_url = s
        .required_str("base_url")
        .filter(|url| check_base_url(&s, url));
    let database = s.optional_str("database");
    let api_key = secret(&mut s, "api_key", true);
    let model = s.optional_str("model").unwrap_or_else(|| MODELS[0].into());
    let model_ok = MODELS.contains(&model.as_str());
    if !model_ok {
        let msg = format!(
            "unknown model \"{model}\" (expected one of: {})",
            MODELS.join(", ")
        );
        s.invalid("model", msg);
    }
    let key_field = s
        .optional_str("key_field")
        .unwrap_or_else(|| "default_code".into());
    let external_ids = s.bool("external_ids", true);
    let on_delete = match s.optional_str("on_delete").as_deref() {
        None | Some("archive") => Some(OnDelete::Archive),
        Some("unlink") => Some(OnDelete::Unlink),
        Some(other) => {
            let msg = format!("unknown value \"{other}\" (expected \"archive\" or \"unlink\")");
            s.invalid("on_delete", msg);
            None
        }
    };
    let lang = s.optional_str("lang");
    // `categories = [{ name = "Chairs", id = 12 }]`: PIM value → product.category id.
    let mut categories = BTreeMap::new();
    for mut c in s.tables("categories") {
        let name = c.required_str("name");
        let id = c.integer("id", 0);
        if id == 0 {
            c.invalid("id", "must be a product.category id (greater than 0)");
        }
        c.finish();
        if let Some(name) = name.filter(|_| id > 0) {
            categories.insert(name, id as i64);
        }
    }
    s.finish();
    let mut settings = OdooSettings::new(&base_url?, &api_key?);
    settings.database = database;
    settings.model = Some(model).filter(|_| model_ok)?;
    settings.key_field = key_field;
    settings.external_ids = external_ids;
    settings.on_delete = on_delete?;
    settings.lang = lang;
    settings.categories = categories;
    Some(TargetKind::Odoo(Box::new(settings)))
}

pub(super) fn rest(mut s: Section<'_, '_>) -> Option<TargetKind> {
    let base_url = s
        .required_str("base_url")
        .filter(|url| check_base_url(&s, url));
    // An empty name turns the header off, for targets without idempotency support.
    let idempotency_header = s
        .optional_str("idempotency_header")
        .unwrap_or_else(|| DEFAULT_IDEMPOTENCY_HEADER.into());
    let header_ok = idempotency_header.is_empty() || is_header_name(&idempotency_header);
    if !header_ok {
        s.invalid("idempotency_header", "invalid HTTP header name");
    }
    let id_pointer = s.optional_str("id_pointer");
    if id_pointer.as_deref().is_some_and(|p| !p.starts_with('/')) {
        s.invalid(
            "id_pointer",
            "must be a JSON pointer starting with '/' (e.g. \"/id\")",
        );
    }
    let auth = match s.subsection("auth") {
        Some(section) => auth(section),
        None => Some(RestAuth::None),
    };
    let upsert = if s.has("upsert") {
        s.subsection("upsert").and_then(operation)
    } else {
        s.invalid("upsert", "missing [targets.rest.upsert] table (required)");
        s.skip("upsert");
        None
    };
    let create = s.subsection("create").map(operation);
    let delete = s.subsection("delete").map(operation);
    s.finish();
    Some(TargetKind::Rest(Box::new(RestSettings {
        base_url: base_url?,
        auth: auth?,
        idempotency_header: Some(idempotency_header)
            .filter(|_| header_ok)?
            .into_non_empty(),
        id_pointer,
        upsert: upsert?,
        create: create.transpose_opt()?,
        delete: delete.transpose_opt()?,
    })))
}

trait NonEmpty {
    fn into_non_empty(self) -> Option<String>;
}

impl NonEmpty for String {
    fn into_non_empty(self) -> Option<String> {
        (!self.is_empty()).then_some(self)
    }
}

/// `Some(None)` (a table that failed to read) is a failure; `None` (no table) is fine.
trait TransposeOpt<T> {
    fn transpose_opt(self) -> Option<Option<T>>;
}

impl<T> TransposeOpt<T> for Option<Option<T>> {
    fn transpose_opt(self) -> Option<Option<T>> {
        match self {
            None => Some(None),
            Some(None) => None,
            Some(Some(v)) => Some(Some(v)),
        }
    }
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn operation(mut o: Section<'_, '_>) -> Option<RestOperation> {
    let method = o.required_str("method");
    let path = o.required_str("path");
    let body = o.optional_str("body");
    let success: Vec<u16> = o
        .integer_list("success", &[])
        .into_iter()
        .map(|c| u16::try_from(c).unwrap_or(0))
        .collect();
    let if_match = o.bool("if_match", false);
    let op = RestOperation {
        method: method?,
        path: path?,
        body,
        success,
        if_match,
    };
    // Placeholders are checked against the mapping later; here the syntax alone.
    let builtins = pimsync_connectors::erp::rest::template::BUILTINS;
    let ok = match op.check(builtins) {
        Err((key, message)) if !message.starts_with("unknown placeholder") => {
            o.invalid(key, message);
            false
        }
        _ => true,
    };
    o.finish();
    ok.then_some(op)
}

fn auth(mut a: Section<'_, '_>) -> Option<RestAuth> {
    let kind = a.required_str("type");
    let auth = match kind.as_deref() {
        Some("none") => Some(RestAuth::None),
        Some("bearer") => secret(&mut a, "token", true).map(|token| RestAuth::Bearer { token }),
        Some("basic") => {
            let username = a.required_str("username");
            let password = secret(&mut a, "password", true);
            Some(RestAuth::Basic {
                username: username?,
                password: password?,
            })
        }
        Some("oauth2") => {
            let token_url = a.required_str("token_url");
            if token_url
                .as_deref()
                .is_some_and(|u| !u.starts_with("https://") && !u.starts_with("http://"))
            {
                a.invalid("token_url", "must start with http:// or https://");
            }
            let client_id = a.required_str("client_id");
            let client_secret = secret(&mut a, "client_secret", true);
            let scope = a.optional_str("scope");
            let audience = a.optional_str("audience");
            let client_auth = match a.optional_str("client_auth").as_deref() {
                None | Some("body") => Some(ClientAuth::Body),
                Some("basic") => Some(ClientAuth::Basic),
                Some(other) => {
                    let msg = format!("unknown value \"{other}\" (expected \"body\" or \"basic\")");
                    a.invalid("client_auth", msg);
                    None
                }
            };
            Some(RestAuth::OAuth2(OAuth2Settings {
                token_url: token_url?,
                client_id: client_id?,
                client_secret: client_secret?,
                scope,
                audience,
                client_auth: client_auth?,
            }))
        }
        Some("session") => {
            let login_path = a.required_str("login_path");
            let body = a.required_str("body");
            if body
                .as_deref()
                .is_some_and(|b| serde_json::from_str::<serde_json::Value>(b).is_err())
            {
                a.invalid("body", "must be JSON, e.g. '{\"user\": \"{{username}}\", \"password\": \"{{password}}\"}'");
            }
            let username = a.required_str("username");
            let password = secret(&mut a, "password", true);
            let token_pointer = a.optional_str("token_pointer");
            let header = a
                .optional_str("header")
                .unwrap_or_else(|| "Authorization".into());
            let prefix = a.optional_str("prefix").unwrap_or_else(|| "Bearer ".into());
            let cookie = a.optional_str("cookie");
            let lifetime = a
                .has("lifetime")
                .then(|| a.duration("lifetime", Default::default()));
            Some(RestAuth::Session(SessionSettings {
                login_path: login_path?,
                body: body?,
                username: username?,
                password: password?,
                token_pointer,
                header,
                prefix,
                cookie,
                lifetime,
            }))
        }
        Some(other) => {
            let msg = format!(
                "unknown auth type \"{other}\" (expected one of: {})",
                AUTH_TYPES.join(", ")
            );
            a.invalid("type", msg);
            None
        }
        None => None,
    };
    a.finish();
    auth
}

/// Cross-checks that need both the kind and the mapping.
pub(super) fn check_mapping(t: &Section<'_, '_>, kind: &TargetKind, mapping: &Mapping) {
    let path = t.path();
    match kind {
        TargetKind::Odoo(odoo) if mapping.fields.contains_key(&odoo.key_field) => {
            let msg = format!(
                "\"{}\" is the key field: it always holds the product key",
                odoo.key_field
            );
            t.ctx()
                .error(0, format!("{path}.mapping.{}", odoo.key_field), msg);
        }
        TargetKind::Rest(rest) => {
            let fields: Vec<&str> = mapping.fields.keys().map(String::as_str).collect();
            let ops = [
                ("upsert", Some(&rest.upsert)),
                ("create", rest.create.as_ref()),
                ("delete", rest.delete.as_ref()),
            ];
            for (name, op) in ops {
                if let Some(Err((key, msg))) = op.map(|op| op.check(&fields)) {
                    t.ctx().error(0, format!("{path}.rest.{name}.{key}"), msg);
                }
            }
        }
        _ => {}
    }
}
