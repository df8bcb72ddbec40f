//! `[admin]` (the admin API listener) and `[[schedules]]` (cron-driven resyncs and
//! reconciles).

use std::net::SocketAddr;

use super::load::{Unique, check_name};
use super::reader::Section;
use super::{AdminConfig, ScheduleAction, ScheduleConfig, SourceConfig, TargetConfig};
use crate::schedule;

pub(super) const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";
/// A shorter token is too easy to guess.
const MIN_TOKEN_LEN: usize = 16;
const ACTIONS: &[&str] = &["resync", "reconcile"];

/// `[admin]`; absent = no admin listener.
pub(super) fn read_admin(root: &mut Section<'_, '_>) -> Option<AdminConfig> {
    let mut s = root.subsection("admin")?;
    let listen = s.optional_str("listen");
    let listen = listen.as_deref().unwrap_or(DEFAULT_ADMIN_LISTEN);
    let listen = match listen.parse::<SocketAddr>() {
        Ok(addr) => Some(addr),
        Err(_) => {
            let msg = format!(
                "invalid socket address \"{listen}\" (expected e.g. \"{DEFAULT_ADMIN_LISTEN}\")"
            );
            s.invalid("listen", msg);
            None
        }
    };
    let token = s.secret("token");
    if let Some(token) = &token {
        if token.expose().len() < MIN_TOKEN_LEN {
            s.invalid(
                "token",
                format!("must be at least {MIN_TOKEN_LEN} bytes (e.g. `openssl rand -hex 32`)"),
            );
        }
    }
    let metrics_auth = s.bool("metrics_auth", false);
    s.finish();
    Some(AdminConfig {
        listen: listen?,
        token: token?,
        metrics_auth,
    })
}

/// `[[schedules]]`. Target and source names are checked against the ones configured
/// (when those were read without errors).
pub(super) fn read_schedules(
    root: &mut Section<'_, '_>,
    sources: &Option<Vec<SourceConfig>>,
    targets: &Option<Vec<TargetConfig>>,
) -> Option<Vec<ScheduleConfig>> {
    let mut names = Unique::default();
    let mut out = Some(Vec::new());
    for section in root.tables("schedules") {
        let schedule = read_schedule(section, &mut names, sources, targets);
        match (schedule, out.as_mut()) {
            (Some(schedule), Some(list)) => list.push(schedule),
            _ => out = None,
        }
    }
    out
}

fn read_schedule(
    mut s: Section<'_, '_>,
    names: &mut Unique,
    sources: &Option<Vec<SourceConfig>>,
    targets: &Option<Vec<TargetConfig>>,
) -> Option<ScheduleConfig> {
    let name = s
        .required_str("name")
        .filter(|name| check_name(&s, name) && names.check(&s, "name", "schedule name", name));
    let cron_text = s.required_str("cron");
    let cron = cron_text
        .as_deref()
        .and_then(|text| match schedule::parse_cron(text) {
            Ok(cron) => Some(cron),
            Err(message) => {
                s.invalid("cron", message);
                None
            }
        });
    let timezone = s.optional_str("timezone");
    let timezone = match schedule::parse_timezone(timezone.as_deref().unwrap_or("UTC")) {
        Ok(tz) => Some(tz),
        Err(message) => {
            s.invalid("timezone", message);
            None
        }
    };
    let action = s.required_str("action");
    let action = match action.as_deref() {
        Some("resync") => {
            let names = s.string_list("targets");
            if let Some(known) = targets {
                for name in &names {
                    if !known.iter().any(|t| &t.name == name) {
                        s.invalid("targets", format!("unknown target \"{name}\""));
                    }
                }
            }
            let since = s
                .has("since")
                .then(|| s.duration("since", Default::default()));
            if since.is_some_and(|d| d.is_zero()) {
                s.invalid(
                    "since",
                    "must be greater than 0 (leave it out for every product)",
                );
            }
            let force = s.bool("force", false);
            for other in ["source"] {
                if s.has(other) {
                    s.skip(other);
                    s.invalid(other, "only allowed with action = \"reconcile\"");
                }
            }
            Some(ScheduleAction::Resync {
                targets: names,
                since,
                force,
            })
        }
        Some("reconcile") => {
            let source = s.required_str("source");
            if let (Some(source), Some(known)) = (&source, sources) {
                if !known.iter().any(|k| &k.name == source) {
                    s.invalid("source", format!("unknown source \"{source}\""));
                }
            }
            for other in ["targets", "since", "force"] {
                if s.has(other) {
                    s.skip(other);
                    s.invalid(other, "only allowed with action = \"resync\"");
                }
            }
            source.map(|source| ScheduleAction::Reconcile { source })
        }
        Some(other) => {
            let expected = ACTIONS.join(", ");
            s.invalid(
                "action",
                format!("unknown action \"{other}\" (expected one of: {expected})"),
            );
            for key in ["targets", "since", "force", "source"] {
                s.skip(key);
            }
            None
        }
        None => None,
    };
    s.finish();
    Some(ScheduleConfig {
        name: name?,
        cron_text: cron_text?,
        cron: cron?,
        timezone: timezone?,
        action: action?,
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::ScheduleAction;
    use super::super::tests::{SOURCE, TestEnv, errors, errors_with, load, load_with};

    const TARGET: &str = r#"
[[targets]]
name = "shop"
kind = "log"
"#;

    #[test]
    fn schedules_and_admin_are_read() {
        let text = format!(
            r#"{SOURCE}{TARGET}
[admin]
listen = "127.0.0.1:9191"
token = {{ env = "ADMIN_TOKEN" }}

[[schedules]]
name = "nightly"
cron = "0 0 3 * * MON-FRI"
timezone = "Europe/Berlin"
action = "resync"
targets = ["shop"]
since = "24h"
force = true

[[schedules]]
name = "weekly-reconcile"
cron = "0 0 4 ? * SUN"
action = "reconcile"
source = "akeneo"
"#
        );
        let config = load_with(
            &text,
            &TestEnv::default().var("ADMIN_TOKEN", "0123456789abcdef0123"),
        );
        let admin = config.admin.unwrap();
        assert_eq!(admin.listen.to_string(), "127.0.0.1:9191");
        assert_eq!(admin.token.expose(), b"0123456789abcdef0123");
        assert!(!admin.metrics_auth);
        assert_eq!(config.schedules.len(), 2);
        let nightly = &config.schedules[0];
        assert_eq!(nightly.timezone, chrono_tz::Europe::Berlin);
        assert_eq!(
            nightly.action,
            ScheduleAction::Resync {
                targets: vec!["shop".into()],
                since: Some(Duration::from_secs(86400)),
                force: true
            }
        );
        assert_eq!(config.schedules[1].timezone, chrono_tz::Tz::UTC);
        assert_eq!(
            config.schedules[1].action,
            ScheduleAction::Reconcile {
                source: "akeneo".into()
            }
        );
    }

    #[test]
    fn no_admin_section_means_disabled() {
        let config = load(&format!("{SOURCE}{TARGET}"));
        assert!(config.admin.is_none());
        assert!(config.schedules.is_empty());
    }

    #[test]
    fn schedule_problems_are_reported_with_their_paths() {
        let text = format!(
            r#"{SOURCE}{TARGET}
[admin]
token = "short"

[[schedules]]
name = "weekdays"
cron = "0 0 3 * * 1-5"
timezone = "Europe/Nowhere"
action = "resync"
targets = ["nope"]
source = "akeneo"

[[schedules]]
name = "weekdays"
cron = "0 0 3 * * *"
action = "reconcile"
source = "missing"
force = true

[[schedules]]
name = "x"
cron = "0 0 3 * * *"
action = "explode"
"#
        );
        let errors = errors(&text);
        let joined = errors.join("\n");
        for expected in [
            "admin.token: must be at least 16 bytes",
            "schedules[0].cron: day-of-week \"1-5\" is numeric",
            "MON-FRI",
            "schedules[0].timezone: unknown time zone \"Europe/Nowhere\"",
            "schedules[0].targets: unknown target \"nope\"",
            "schedules[0].source: only allowed with action = \"reconcile\"",
            "schedules[1].name: duplicate schedule name \"weekdays\"",
            "schedules[1].source: unknown source \"missing\"",
            "schedules[1].force: only allowed with action = \"resync\"",
            "schedules[2].action: unknown action \"explode\"",
        ] {
            assert!(
                joined.contains(expected),
                "missing {expected:?} in:\n{joined}"
            );
        }
    }

    #[test]
    fn admin_token_is_required() {
        let errors = errors_with(
            &format!("{SOURCE}{TARGET}\n[admin]\nlisten = \"127.0.0.1:9090\"\n"),
            &TestEnv::default(),
        );
        assert_eq!(errors, ["admin.token: missing required key"]);
    }
}

#[cfg(test)]
mod summary_tests {
    use chrono::TimeZone;

    use super::super::tests::{SOURCE, load};

    #[test]
    fn summary_lists_the_next_three_fire_times_in_the_schedule_time_zone() {
        let config = load(&format!(
            r#"{SOURCE}
[[targets]]
name = "shop"
kind = "log"

[[schedules]]
name = "nightly"
cron = "0 0 3 * * MON-FRI"
timezone = "America/New_York"
action = "resync"
since = "1d"
"#
        ));
        let mut out = String::new();
        // Friday 2026-07-03 12:00 UTC.
        let now = chrono::Utc.with_ymd_and_hms(2026, 7, 3, 12, 0, 0).unwrap();
        config.write_operations(&mut out, now).unwrap();
        assert!(out.contains("admin:             disabled"), "{out}");
        assert!(
            out.contains("nightly  \"0 0 3 * * MON-FRI\" (America/New_York): resync all targets, products stored in the last 1day"),
            "{out}"
        );
        for expected in [
            "next: 2026-07-06 03:00:00 EDT (-04:00)",
            "next: 2026-07-07 03:00:00 EDT (-04:00)",
            "next: 2026-07-08 03:00:00 EDT (-04:00)",
        ] {
            assert!(out.contains(expected), "missing {expected:?} in:\n{out}");
        }
    }
}
