//! Cron expressions: Quartz syntax through the `cron` crate (seconds first, an optional
//! year last), evaluated in a schedule's IANA time zone.

use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

pub use cron::Schedule as CronSchedule;

/// Parses a Quartz cron expression. Numeric days of the week are refused: in Quartz (and
/// the `cron` crate) 1 is Sunday, while in Unix cron 1 is Monday, so `1-5` silently means
/// Sunday to Thursday for anyone used to crontab. Names (`MON-FRI`) mean the same to both.
pub fn parse(expression: &str) -> Result<CronSchedule, String> {
    let text = expression.trim();
    if text.is_empty() {
        return Err("empty cron expression".into());
    }
    if !text.starts_with('@') {
        let fields: Vec<&str> = text.split_whitespace().collect();
        if fields.len() == 5 {
            return Err(format!(
                "\"{text}\" has 5 fields; pimsync uses Quartz syntax with seconds first \
                 (sec min hour day-of-month month day-of-week [year]), e.g. \"0 {text}\""
            ));
        }
        if !(6..=7).contains(&fields.len()) {
            return Err(format!(
                "\"{text}\" has {} fields; expected 6 or 7 \
                 (sec min hour day-of-month month day-of-week [year])",
                fields.len()
            ));
        }
        if has_numeric_weekday(fields[5]) {
            return Err(format!(
                "day-of-week \"{}\" is numeric; in Quartz syntax 1 = Sunday (not Monday as in \
                 crontab), so write names instead, e.g. MON-FRI or SAT,SUN",
                fields[5]
            ));
        }
    }
    CronSchedule::from_str(text).map_err(|e| format!("invalid cron expression \"{text}\": {e}"))
}

/// True when a day-of-week field names a day by number (`1`, `1-5`, `2,4`, `1/2`). Step
/// sizes (`*/2`, `MON/2`) are numbers but not days, so they pass.
fn has_numeric_weekday(field: &str) -> bool {
    field.split(',').any(|part| {
        let days = part.split('/').next().unwrap_or("");
        days.split('-')
            .any(|day| !day.is_empty() && day.bytes().all(|b| b.is_ascii_digit()))
    })
}

/// The next `n` fire times strictly after `after`, in the schedule's time zone.
pub fn next_fires(
    schedule: &CronSchedule,
    timezone: Tz,
    after: DateTime<Utc>,
    n: usize,
) -> Vec<DateTime<Tz>> {
    schedule
        .after(&after.with_timezone(&timezone))
        .take(n)
        .collect()
}

/// Parses an IANA time zone name such as "Europe/Berlin" or "UTC".
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| {
        format!(
            "unknown time zone \"{name}\" (expected an IANA name like \"Europe/Berlin\" or \"UTC\")"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    fn fmt(times: &[DateTime<Tz>]) -> Vec<String> {
        times
            .iter()
            .map(|t| t.format("%Y-%m-%d %H:%M:%S %a %Z").to_string())
            .collect()
    }

    #[test]
    fn numeric_weekdays_are_rejected_with_a_hint() {
        for expr in [
            "0 0 3 * * 1-5",
            "0 0 3 ? * 2",
            "0 0 3 ? * 1,7",
            "0 0 3 ? * MON,3",
        ] {
            let error = parse(expr).unwrap_err();
            assert!(error.contains("MON-FRI"), "{expr}: {error}");
            assert!(error.contains("1 = Sunday"), "{expr}: {error}");
        }
    }

    #[test]
    fn named_weekdays_steps_and_shorthands_are_accepted() {
        for expr in [
            "0 0 3 * * MON-FRI",
            "0 0 3 ? * SAT,SUN",
            "0 0 3 * * */2",
            "0 */15 * * * *",
            "* * * * * *",
            "0 30 2 1 * * 2030",
            "@daily",
        ] {
            parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
        }
    }

    #[test]
    fn unix_style_and_garbage_are_rejected() {
        let error = parse("0 3 * * *").unwrap_err();
        assert!(error.contains("seconds first"), "{error}");
        assert!(parse("").is_err());
        assert!(parse("0 0 25 * * *").is_err());
        assert!(parse("a b c d e f").is_err());
    }

    #[test]
    fn next_fires_of_weekdays_at_three_in_berlin() {
        let schedule = parse("0 0 3 * * MON-FRI").unwrap();
        let tz = parse_timezone("Europe/Berlin").unwrap();
        // Friday 2026-03-06 12:00 UTC.
        let fires = next_fires(&schedule, tz, utc(2026, 3, 6, 12, 0, 0), 3);
        assert_eq!(
            fmt(&fires),
            [
                "2026-03-09 03:00:00 Mon CET",
                "2026-03-10 03:00:00 Tue CET",
                "2026-03-11 03:00:00 Wed CET",
            ]
        );
        assert_eq!(fires[0].with_timezone(&Utc), utc(2026, 3, 9, 2, 0, 0));
    }

    #[test]
    fn next_fires_cross_daylight_saving_time() {
        let schedule = parse("0 0 12 * * *").unwrap();
        let tz = parse_timezone("Europe/Berlin").unwrap();
        // Europe switches to summer time on Sunday 2026-03-29.
        let fires = next_fires(&schedule, tz, utc(2026, 3, 28, 12, 0, 0), 2);
        assert_eq!(
            fmt(&fires),
            [
                "2026-03-29 12:00:00 Sun CEST",
                "2026-03-30 12:00:00 Mon CEST"
            ]
        );
        assert_eq!(fires[0].with_timezone(&Utc), utc(2026, 3, 29, 10, 0, 0));
    }

    #[test]
    fn next_fire_is_strictly_after_and_every_second_works() {
        let schedule = parse("* * * * * *").unwrap();
        let at = utc(2026, 1, 1, 0, 0, 0);
        let fires = next_fires(&schedule, Tz::UTC, at, 3);
        let secs: Vec<i64> = fires
            .iter()
            .map(|t| (t.with_timezone(&Utc) - at).num_seconds())
            .collect();
        assert_eq!(secs, [1, 2, 3]);
    }

    #[test]
    fn time_zones_by_iana_name() {
        assert_eq!(parse_timezone("UTC").unwrap(), Tz::UTC);
        assert!(parse_timezone("Mars/Olympus").is_err());
    }
}
