//! The `log` (dry-run) connector: writes what an apply would send, one JSON line per apply.
//! Operators use it to preview a mapping before pointing pimsync at a real shop; tests and
//! the demo use it as a target that never fails.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::json;

use crate::connector::{Applied, ApplyError, ApplyRequest, Connector, Desired};

pub struct LogConnector {
    /// Where lines go: an append-only file, or stdout.
    sink: Mutex<Box<dyn Write + Send>>,
}

impl LogConnector {
    /// Appends to `path` (created if missing), or writes to stdout when `None`.
    pub fn open(path: Option<&PathBuf>) -> std::io::Result<LogConnector> {
        let sink: Box<dyn Write + Send> = match path {
            Some(path) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            ),
            None => Box::new(std::io::stdout()),
        };
        Ok(LogConnector {
            sink: Mutex::new(sink),
        })
    }
}

#[async_trait]
impl Connector for LogConnector {
    fn kind(&self) -> &'static str {
        "log"
    }

    async fn apply(&self, request: ApplyRequest<'_>) -> Result<Applied, ApplyError> {
        let line = match request.desired {
            Desired::Upsert {
                kind,
                snapshot,
                variants,
            } => json!({
                "target": request.target,
                "product_key": request.product_key,
                "op": "upsert",
                "kind": kind,
                "idempotency_key": request.idempotency_key,
                "attempt": request.attempt,
                "product": snapshot,
                "variants": variants.iter().map(|v| json!({"key": v.key, "product": v.snapshot})).collect::<Vec<_>>(),
            }),
            Desired::Delete => json!({
                "target": request.target,
                "product_key": request.product_key,
                "op": "delete",
                "idempotency_key": request.idempotency_key,
                "attempt": request.attempt,
            }),
        };
        let mut sink = self
            .sink
            .lock()
            .map_err(|_| ApplyError::retryable("log sink poisoned"))?;
        writeln!(sink, "{line}")
            .and_then(|()| sink.flush())
            .map_err(|e| ApplyError::retryable(format!("writing the log: {e}")))?;
        let mut remote_ids = request.remote_ids.clone();
        remote_ids.insert("log".into(), request.product_key.to_owned());
        Ok(Applied::new(remote_ids))
    }
}
