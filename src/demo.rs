//! `pimsync demo`: the whole receive path on a temporary database, with no setup. A
//! simulated PIM sends signed Akeneo webhooks (bursts of edits, a forged signature, a
//! replay, a late event) and the demo shows what the store made of them.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::Semaphore;

use crate::config::{
    Config, Secret, ServerConfig, SourceConfig, SourceFormat, StoreConfig, TargetConfig,
    TargetFilter, TargetKind,
};
use crate::daemon::{self, Daemon};
use crate::simulate::{self, Edit, Sender};

const SECRET: &[u8] = b"demo-secret";
const PRODUCTS: usize = 200;

pub async fn run(edits: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("pimsync-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_in(&dir, edits).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn demo_config(dir: &std::path::Path) -> Config {
    let log_target = |name: &str, families: &[&str]| TargetConfig {
        name: name.to_owned(),
        filter: TargetFilter {
            families: families.iter().map(|f| (*f).to_owned()).collect(),
            ..Default::default()
        },
        mapping: Default::default(),
        delivery: Default::default(),
        kind: TargetKind::Log {
            path: Some(dir.join(format!("{name}.jsonl"))),
        },
    };
    Config {
        server: ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
        },
        store: StoreConfig {
            path: dir.join("pimsync.db"),
            inbox_retention: Duration::from_secs(7 * 86400),
            inbox_max_rows: 0,
            max_batch: 1024,
            queue_capacity: 8192,
            max_size: 0,
        },
        sources: vec![SourceConfig {
            name: "akeneo".into(),
            path: "/webhooks/akeneo".into(),
            format: SourceFormat::Akeneo {
                secret: Secret::new(SECRET),
                tolerance: Duration::from_secs(300),
            },
            api: None,
        }],
        targets: vec![
            log_target("shopify-sim", &[]),
            log_target("magento-sim", &["chairs"]),
            log_target("erp-sim", &[]),
        ],
    }
}

async fn run_in(dir: &std::path::Path, edits: usize) -> anyhow::Result<()> {
    let config = demo_config(dir);
    println!("pimsync demo — database in {}", dir.display());
    println!(
        "targets: shopify-sim (all products), magento-sim (family \"chairs\" only), erp-sim (all)\n"
    );
    let daemon = Daemon::start(config)
        .await
        .context("starting the demo daemon")?;
    let store = daemon.store().clone();
    let listener = daemon::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
    let url = format!("http://{}/webhooks/akeneo", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(daemon.serve(listener, async {
        let _ = stopped.await;
    }));

    println!(
        "1. A product manager edits {PRODUCTS} products {edits} times in bursts (signed Akeneo webhooks, 32 at a time)"
    );
    let sender = Sender::default();
    let started = Instant::now();
    let statuses = send_edits(&sender, &url, edits).await;
    let elapsed = started.elapsed();
    println!(
        "   {} webhooks in {:.2} s ({:.0}/s), answers: {}",
        edits,
        elapsed.as_secs_f64(),
        edits as f64 / elapsed.as_secs_f64().max(1e-9),
        describe(&statuses)
    );

    println!("2. Things that go wrong in real life:");
    let now = simulate::unix_now();
    let base = demo_epoch_us();
    let sample = Edit {
        key: "SKU-0001",
        family: "chairs",
        updated_us: base,
        price_cents: 100,
        stock: 1,
        body_size: 0,
    };
    let forged = simulate::akeneo_product_updated(b"wrong-secret", now, &sample);
    let forged_status = sender.post(&url, &forged).await.map(|r| r.0);
    println!("   forged signature          → {}", show(forged_status));
    let late = simulate::akeneo_product_updated(SECRET, now, &sample);
    let late_status = sender.post(&url, &late).await;
    println!(
        "   late event (older version) → {}",
        late_status
            .as_ref()
            .map(|(s, body)| format!("{s} {}", String::from_utf8_lossy(body)))
            .unwrap_or_else(|e| e.clone())
    );
    let replay_status = sender.post(&url, &late).await.map(|r| r.0);
    println!(
        "   the same delivery again   → {} (duplicate, not reprocessed)",
        show(replay_status)
    );

    let counts = store.counts().await?;
    println!("\n3. What the store holds (committed, fsynced):");
    println!(
        "   products: {}   inbox (raw webhooks kept for audit/replay): {}",
        counts.products, counts.inbox
    );
    println!("   outbox, one row per (target, product) — the state each target must reach:");
    let mut per_target: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (target, state, rows) in &counts.outbox {
        per_target
            .entry(target.clone())
            .or_default()
            .insert(state.clone(), *rows);
    }
    println!(
        "   {:<14} {:>8} {:>8} {:>8}",
        "target", "pending", "leased", "dead"
    );
    for (target, states) in &per_target {
        let get = |s: &str| states.get(s).copied().unwrap_or(0);
        println!(
            "   {:<14} {:>8} {:>8} {:>8}",
            target,
            get("pending"),
            get("leased"),
            get("dead")
        );
    }
    let rows: i64 = counts.outbox.iter().map(|(_, _, n)| n).sum();
    println!(
        "   {edits} edits coalesced into {rows} outbox rows: each target gets each product's latest state once, not every intermediate edit."
    );
    println!(
        "\nDelivery to the simulated targets (dispatcher and connectors) is the next milestone; rows stay pending here."
    );

    let _ = stop.send(());
    server.await.context("demo server task")??;
    Ok(())
}

async fn send_edits(sender: &Sender, url: &str, edits: usize) -> BTreeMap<String, usize> {
    let gate = Arc::new(Semaphore::new(32));
    let base = demo_epoch_us() + 1_000_000;
    let now = simulate::unix_now();
    let mut tasks = Vec::with_capacity(edits);
    for n in 0..edits {
        let permit = gate.clone().acquire_owned().await;
        let sender = sender.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let product = n % PRODUCTS;
            let key = format!("SKU-{product:04}");
            let edit = Edit {
                key: &key,
                family: if product % 2 == 0 { "chairs" } else { "tables" },
                updated_us: base + n as i64,
                price_cents: 1000 + n as i64,
                stock: (n % 50) as i64,
                body_size: 1024,
            };
            let request = simulate::akeneo_product_updated(SECRET, now, &edit);
            sender.post(&url, &request).await.map(|r| r.0)
        }));
    }
    let mut statuses = BTreeMap::new();
    for task in tasks {
        let status = match task.await {
            Ok(result) => show(result),
            Err(error) => error.to_string(),
        };
        *statuses.entry(status).or_insert(0) += 1;
    }
    statuses
}

fn demo_epoch_us() -> i64 {
    simulate::unix_now() * 1_000_000
}

fn show(result: Result<u16, String>) -> String {
    match result {
        Ok(status) => status.to_string(),
        Err(error) => format!("error: {error}"),
    }
}

fn describe(statuses: &BTreeMap<String, usize>) -> String {
    statuses
        .iter()
        .map(|(status, n)| format!("{n}× {status}"))
        .collect::<Vec<_>>()
        .join(", ")
}
