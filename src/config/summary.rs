//! What `pimsync check-config` prints: enough to confirm the daemon will do what the operator
//! meant, and safe to paste into a ticket (no secret, not even its length).

use std::fmt::Write as _;
use std::time::Duration;

use super::{Config, SignatureEncoding, SourceFormat, TargetFilter, TargetKind};
use pimsync_connectors::magento::MagentoAuth;

impl Config {
    pub fn summary(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = self.write_summary(&mut out);
        out
    }

    fn write_summary(&self, out: &mut String) -> std::fmt::Result {
        let server = &self.server;
        writeln!(out, "server:")?;
        writeln!(out, "  listen           {}", server.listen)?;
        writeln!(
            out,
            "  body limit       {}",
            bytes(server.body_limit as u64)
        )?;
        writeln!(
            out,
            "  request timeout  {}",
            duration(server.request_timeout)
        )?;
        writeln!(
            out,
            "  shutdown grace   {}",
            duration(server.shutdown_grace)
        )?;
        let threads = crate::daemon::worker_threads(server.worker_threads);
        match server.worker_threads {
            Some(_) => writeln!(out, "  worker threads   {threads}")?,
            None => writeln!(
                out,
                "  worker threads   {threads} (one fewer than the CPUs, at least 1)"
            )?,
        }

        let store = &self.store;
        writeln!(out, "store:")?;
        writeln!(out, "  path             {}", store.path.display())?;
        let rows = match store.inbox_max_rows {
            0 => "no row limit".to_string(),
            n => format!("at most {n} rows"),
        };
        let retention = duration(store.inbox_retention);
        writeln!(out, "  inbox            kept {retention}, {rows}")?;
        writeln!(out, "  max batch        {}", store.max_batch)?;
        writeln!(out, "  queue capacity   {}", store.queue_capacity)?;
        match store.max_size {
            0 => writeln!(out, "  max size         no limit")?,
            n => writeln!(out, "  max size         {n} bytes")?,
        }

        writeln!(out, "sources ({}):", self.sources.len())?;
        for source in &self.sources {
            let detail = match &source.format {
                SourceFormat::Akeneo { tolerance, .. } => {
                    format!("tolerance {}", duration(*tolerance))
                }
                SourceFormat::AkeneoEventPlatform { secondary, .. } => match secondary {
                    Some(_) => "primary and secondary secret".to_string(),
                    None => "primary secret".to_string(),
                },
                SourceFormat::StandardWebhooks { secrets, tolerance } => format!(
                    "{} secret(s), tolerance {}",
                    secrets.len(),
                    duration(*tolerance)
                ),
                SourceFormat::Hmac {
                    header,
                    prefix,
                    encoding,
                    delivery_id_header,
                    ..
                } => {
                    let encoding = match encoding {
                        SignatureEncoding::Hex => "hex",
                        SignatureEncoding::Base64 => "base64",
                    };
                    let mut d = format!("header {header}, {encoding}");
                    if let Some(prefix) = prefix {
                        let _ = write!(d, ", prefix \"{prefix}\"");
                    }
                    if let Some(h) = delivery_id_header {
                        let _ = write!(d, ", delivery id from {h}");
                    }
                    d
                }
            };
            writeln!(
                out,
                "  {}  POST {}  {} ({detail})",
                source.name,
                source.path,
                source.format.name()
            )?;
        }

        writeln!(out, "targets ({}):", self.targets.len())?;
        for target in &self.targets {
            let destination = match &target.kind {
                TargetKind::Log { path: None } => "to stdout".to_string(),
                TargetKind::Log { path: Some(path) } => format!("to {}", path.display()),
                TargetKind::Shopify(shopify) => {
                    format!("{} (API {})", shopify.shop, shopify.api_version)
                }
                TargetKind::Magento(m) => format!(
                    "{} ({} auth, {}, deletion {})",
                    super::targets::url_host(&m.base_url),
                    match m.auth {
                        MagentoAuth::Bearer { .. } => "bearer",
                        MagentoAuth::OAuth1(_) => "oauth1",
                    },
                    if m.msi { "msi" } else { "legacy stock" },
                    m.deletion.name()
                ),
                TargetKind::Http { base_url, .. } => super::targets::url_host(base_url).into(),
                TargetKind::Odoo(odoo) => format!(
                    "{} ({})",
                    super::targets::url_host(&odoo.base_url),
                    odoo.model
                ),
                TargetKind::Rest(rest) => super::targets::url_host(&rest.base_url).into(),
                TargetKind::Webhook(webhook) => format!(
                    "{} ({}, {} signing secret(s))",
                    super::targets::url_host(&webhook.settings.url),
                    if webhook.coalesce {
                        "latest state"
                    } else {
                        "every change, in order"
                    },
                    webhook.settings.keys.len()
                ),
            };
            writeln!(
                out,
                "  {}  {} {destination}; {}",
                target.name,
                target.kind.name(),
                filter(&target.filter)
            )?;
            let d = &target.delivery;
            let rate = if d.rate_limit > 0.0 {
                format!("{} req/s (burst {})", d.rate_limit, d.burst)
            } else {
                "no rate limit".to_string()
            };
            let spacing = if target.keeps_history() {
                "every change".to_string()
            } else if d.min_interval.is_zero() {
                "each change as soon as the last apply is done".to_string()
            } else {
                format!(
                    "at most 2 applies per product per {}",
                    duration(d.min_interval)
                )
            };
            writeln!(
                out,
                "      delivery: {} at once, {rate}, up to {} attempts, backoff {}..{}, {spacing}",
                d.concurrency,
                d.max_attempts,
                duration(d.retry_base),
                duration(d.retry_cap)
            )?;
            for (field, source) in &target.mapping.fields {
                let mut from = source.attribute.clone();
                for (label, part) in [
                    ("locale", &source.locale),
                    ("scope", &source.scope),
                    ("currency", &source.currency),
                ] {
                    if let Some(part) = part {
                        from.push_str(&format!(" {label}={part}"));
                    }
                }
                writeln!(out, "      {field} ← {from}")?;
            }
        }
        self.write_operations(out, chrono::Utc::now())
    }

    /// `[admin]` and `[[schedules]]`, each schedule with its next three fire times (in
    /// its own time zone) after `now`.
    pub(super) fn write_operations(
        &self,
        out: &mut String,
        now: chrono::DateTime<chrono::Utc>,
    ) -> std::fmt::Result {
        match &self.admin {
            None => writeln!(out, "admin:             disabled (no [admin] section)")?,
            Some(admin) => {
                let metrics = if admin.metrics_auth {
                    "/metrics needs the token"
                } else {
                    "/metrics, /healthz, /readyz without token"
                };
                writeln!(out, "admin:")?;
                writeln!(out, "  listen           {}", admin.listen)?;
                writeln!(out, "  auth             bearer token; {metrics}")?;
            }
        }
        writeln!(out, "schedules ({}):", self.schedules.len())?;
        let upcoming = crate::schedule::upcoming(&self.schedules, now, 3);
        for schedule in &self.schedules {
            let action = match &schedule.action {
                super::ScheduleAction::Resync {
                    targets,
                    since,
                    force,
                } => {
                    let mut a = if targets.is_empty() {
                        "resync all targets".to_string()
                    } else {
                        format!("resync {}", targets.join(", "))
                    };
                    match since {
                        Some(since) => {
                            let _ = write!(a, ", products stored in the last {}", duration(*since));
                        }
                        None => a.push_str(", every product"),
                    }
                    if *force {
                        a.push_str(", forced");
                    }
                    a
                }
                super::ScheduleAction::Reconcile { source } => format!("reconcile source {source}"),
            };
            writeln!(
                out,
                "  {}  \"{}\" ({}): {action}",
                schedule.name,
                schedule.cron_text,
                schedule.timezone.name()
            )?;
            let times = upcoming.get(&schedule.name).cloned().unwrap_or_default();
            if times.is_empty() {
                writeln!(out, "      next: never")?;
            }
            for time in times {
                writeln!(out, "      next: {time}")?;
            }
        }
        Ok(())
    }
}

fn filter(f: &TargetFilter) -> String {
    let mut parts = Vec::new();
    if !f.families.is_empty() {
        parts.push(format!("families {}", f.families.join(", ")));
    }
    if !f.categories.is_empty() {
        parts.push(format!("categories {}", f.categories.join(", ")));
    }
    if f.enabled_only {
        parts.push("enabled only".to_string());
    }
    if !f.changed.is_empty() {
        let watched: Vec<String> = f
            .changed
            .iter()
            .map(|s| {
                pimsync_connectors::webhook::event::value_id(
                    &s.attribute,
                    s.locale.as_deref(),
                    s.scope.as_deref(),
                )
            })
            .collect();
        parts.push(format!("when changed: {}", watched.join(", ")));
    }
    if parts.is_empty() {
        "all products".to_string()
    } else {
        parts.join("; ")
    }
}

fn duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

fn bytes(n: u64) -> String {
    const UNITS: &[(u64, &str)] = &[(1 << 30, "GiB"), (1 << 20, "MiB"), (1 << 10, "KiB")];
    for &(size, unit) in UNITS {
        if n >= size && n % size == 0 {
            return format!("{} {unit}", n / size);
        }
    }
    format!("{n} bytes")
}
