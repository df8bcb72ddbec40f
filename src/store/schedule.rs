//! The store side of the scheduler: the record of each schedule's last run. (Its resyncs
//! are [`Store::resync`], shared with the CLI and the admin API.)

use rusqlite::params;

use super::{Store, StoreError};

/// A schedule's last run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScheduleRun {
    pub name: String,
    pub started_at: i64,
    pub finished_at: Option<i64>,
    /// running | ok | failed
    pub outcome: String,
    pub detail: Option<String>,
}

impl Store {
    pub async fn record_schedule_start(&self, name: &str, at: i64) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO schedule_runs (name, started_at, finished_at, outcome, detail)
                 VALUES (?1, ?2, NULL, 'running', NULL)
                 ON CONFLICT (name) DO UPDATE SET started_at = excluded.started_at,
                     finished_at = NULL, outcome = 'running', detail = NULL",
                params![name, at],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn record_schedule_end(
        &self,
        name: &str,
        at: i64,
        outcome: &str,
        detail: &str,
    ) -> Result<(), StoreError> {
        let (name, outcome, detail) = (name.to_owned(), outcome.to_owned(), detail.to_owned());
        self.write(move |conn| {
            conn.execute(
                "UPDATE schedule_runs SET finished_at = ?2, outcome = ?3, detail = ?4 WHERE name = ?1",
                params![name, at, outcome, detail],
            )?;
            Ok(())
        })
        .await
    }

    /// The last run of every schedule that has run, by name.
    pub async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>, StoreError> {
        self.read(|conn| {
            let mut statement = conn.prepare(
                "SELECT name, started_at, finished_at, outcome, detail FROM schedule_runs ORDER BY name",
            )?;
            let rows = statement.query_map([], |row| {
                Ok(ScheduleRun {
                    name: row.get(0)?,
                    started_at: row.get(1)?,
                    finished_at: row.get(2)?,
                    outcome: row.get(3)?,
                    detail: row.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}
