//! `[sources.api]`: how pimsync reaches the PIM's REST API to fetch the products that thin
//! events name and to reconcile the catalog (see `crate::pull`).

use std::time::Duration;

use pimsync_connectors::akeneo::AkeneoSettings;

use super::reader::Section;

/// The PIM API of one source, secrets resolved (`Debug` redacts them).
#[derive(Debug, Clone)]
pub struct PullConfig {
    pub settings: AkeneoSettings,
    /// Thin events fetched per request (a `uuid IN` search); 1 to 100.
    pub fetch_batch: usize,
    /// Delete products known locally but absent from a full reconcile. Off by default: a
    /// full pull then only reports them.
    pub delete_missing: bool,
}

pub(super) const DEFAULT_FETCH_BATCH: u64 = 100;

/// Reads `[sources.api]` of a source whose format is `format`.
pub(super) fn read_api(s: &mut Section<'_, '_>, format: Option<&str>) -> Option<PullConfig> {
    if !s.has("api") {
        return None;
    }
    let mut a = s.subsection("api")?;
    if !matches!(
        format,
        None | Some("akeneo") | Some("akeneo-event-platform")
    ) {
        s.invalid(
            "api",
            "only sources of format akeneo or akeneo-event-platform can be pulled from",
        );
    }
    let base_url = a
        .required_str("base_url")
        .filter(|url| super::targets::check_base_url(&a, url));
    let client_id = a.required_str("client_id");
    let secret = a
        .secret("secret")
        .and_then(|v| utf8(&a, "secret", v.expose()));
    let username = a.required_str("username");
    let password = a
        .secret("password")
        .and_then(|v| utf8(&a, "password", v.expose()));
    let fetch_batch = a.integer("fetch_batch", DEFAULT_FETCH_BATCH);
    if !(1..=100).contains(&fetch_batch) {
        a.invalid("fetch_batch", "must be between 1 and 100");
    }
    let delete_missing = a.bool("delete_missing", false);
    let request_timeout = a.duration("request_timeout", Duration::from_secs(30));
    if request_timeout.is_zero() {
        a.invalid("request_timeout", "must be greater than 0");
    }
    a.finish();
    let mut settings =
        AkeneoSettings::new(&base_url?, &client_id?, &secret?, &username?, &password?);
    settings.request_timeout = request_timeout;
    Some(PullConfig {
        settings,
        fetch_batch: fetch_batch.clamp(1, 100) as usize,
        delete_missing,
    })
}

fn utf8(s: &Section<'_, '_>, key: &str, bytes: &[u8]) -> Option<String> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Some(text.to_owned()),
        Err(_) => {
            s.invalid(key, "must be UTF-8 text");
            None
        }
    }
}
