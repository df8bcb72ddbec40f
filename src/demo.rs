//! `pimsync demo`: the whole path on a temporary database, with no setup. A simulated PIM
//! sends signed Akeneo webhooks (bursts of edits, a forged signature, a replay, a late
//! event) to a real pimsync, which delivers to three simulated targets on this machine,
//! one of them starting in an outage.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::Semaphore;

use crate::config::{
    Config, DeliveryConfig, Secret, ServerConfig, SourceConfig, SourceFormat, StoreConfig,
    TargetConfig, TargetFilter, TargetKind,
};
use crate::daemon::{self, Daemon};
use crate::simulate::target::SimulatedTarget;
use crate::simulate::{self, Edit, Sender};

const SECRET: &[u8] = b"demo-secret";
const PRODUCTS: usize = 200;
/// How long the ERP stays down at the start.
const OUTAGE: Duration = Duration::from_secs(2);
const CONVERGE_WITHIN: Duration = Duration::from_secs(60);

pub async fn run(edits: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("pimsync-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = run_in(&dir, edits.max(PRODUCTS)).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

struct Sim {
    name: &'static str,
    families: &'static [&'static str],
    target: SimulatedTarget,
}

fn demo_config(dir: &Path, sims: &[Sim]) -> Config {
    let targets = sims
        .iter()
        .map(|sim| TargetConfig {
            name: sim.name.to_owned(),
            filter: TargetFilter {
                families: sim.families.iter().map(|f| (*f).to_owned()).collect(),
                ..Default::default()
            },
            mapping: Default::default(),
            delivery: DeliveryConfig {
                retry_base: Duration::from_millis(200),
                retry_cap: Duration::from_secs(2),
                ..Default::default()
            },
            kind: TargetKind::Http {
                base_url: sim.target.base_url(),
                bearer_token: None,
            },
        })
        .collect();
    Config {
        server: ServerConfig {
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            body_limit: 1 << 20,
            request_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            worker_threads: None,
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
            echo_of: None,
            api: None,
        }],
        targets,
        schedules: Vec::new(),
        admin: None,
    }
}

fn family_of(product: usize) -> &'static str {
    if product % 2 == 0 { "chairs" } else { "tables" }
}

async fn run_in(dir: &Path, edits: usize) -> anyhow::Result<()> {
    let mut sims = Vec::new();
    for (name, families) in [
        ("shopify-sim", &[][..]),
        ("magento-sim", &["chairs"][..]),
        ("erp-sim", &[][..]),
    ] {
        let target = SimulatedTarget::start()
            .await
            .context("starting a simulated target")?;
        sims.push(Sim {
            name,
            families,
            target,
        });
    }
    let erp = sims[2].target.clone();
    erp.set_down(true);

    println!(
        "pimsync demo: a simulated PIM, a real pimsync and three simulated targets on this machine"
    );
    println!("   database {}", dir.join("pimsync.db").display());
    println!("   shopify-sim  every product");
    println!("   magento-sim  family \"chairs\" only (a target filter)");
    println!(
        "   erp-sim      every product; starts in an outage (503, Retry-After: 1), back after {} s\n",
        OUTAGE.as_secs()
    );

    let config = demo_config(dir, &sims);
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
    let started = Instant::now();
    let outage = tokio::spawn({
        let erp = erp.clone();
        async move {
            tokio::time::sleep(OUTAGE).await;
            erp.set_down(false);
        }
    });

    println!(
        "1. A product manager edits {PRODUCTS} products {edits} times in bursts (signed Akeneo webhooks, 32 at a time)"
    );
    let sender = Sender::default();
    let sent_at = Instant::now();
    let (statuses, final_price) = send_edits(&sender, &url, edits).await;
    let elapsed = sent_at.elapsed();
    println!(
        "   {} webhooks in {:.2} s ({:.0}/s), answers: {}",
        edits,
        elapsed.as_secs_f64(),
        edits as f64 / elapsed.as_secs_f64().max(1e-9),
        describe(&statuses)
    );

    println!("2. Things that go wrong in real life:");
    let now = simulate::unix_now();
    let sample = Edit {
        key: "SKU-0001",
        family: family_of(1),
        updated_us: simulate::unix_now() * 1_000_000 - 60_000_000,
        price_cents: 1,
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

    println!("3. Delivery: each target converges to each product's latest state");
    let expected = |sim: &Sim| {
        final_price
            .iter()
            .filter(|(product, _)| {
                sim.families.is_empty() || sim.families.contains(&family_of(**product))
            })
            .count()
    };
    let mut last_line = Instant::now() - Duration::from_secs(1);
    let converged = loop {
        let settled = store.counts().await?.outbox.is_empty();
        let done = sims
            .iter()
            .all(|sim| up_to_date(sim, &final_price) == expected(sim));
        if last_line.elapsed() >= Duration::from_millis(500) || (settled && done) {
            last_line = Instant::now();
            let cells: Vec<String> = sims
                .iter()
                .map(|sim| {
                    let refused = sim.target.refused();
                    let outage = if refused > 0 {
                        format!(" ({refused}× 503)")
                    } else {
                        String::new()
                    };
                    format!(
                        "{} {}/{}{outage}",
                        sim.name,
                        up_to_date(sim, &final_price),
                        expected(sim)
                    )
                })
                .collect();
            println!(
                "   t={:>4.1}s  {}",
                started.elapsed().as_secs_f64(),
                cells.join("   ")
            );
        }
        if settled && done {
            break true;
        }
        if started.elapsed() > CONVERGE_WITHIN {
            break false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    outage.abort();

    println!("4. Summary");
    for sim in &sims {
        let refused = sim.target.refused();
        let retried = if refused > 0 {
            format!(
                "; {refused} refused during the outage, retried after Retry-After until accepted"
            )
        } else {
            String::new()
        };
        println!(
            "   {:<12} {:>5} successful calls for {} products{retried}",
            sim.name,
            sim.target.calls(),
            expected(sim),
        );
    }
    println!(
        "   {edits} edits became at most a few calls per product: the outbox keeps desired state, not a queue of events."
    );
    let _ = stop.send(());
    server.await.context("demo server task")??;
    if !converged {
        bail!("the targets did not converge within {CONVERGE_WITHIN:?}");
    }
    println!("   Every target holds the latest price of every product routed to it.");
    Ok(())
}

/// How many products this target holds at their final price.
fn up_to_date(sim: &Sim, final_price: &BTreeMap<usize, i64>) -> usize {
    final_price
        .iter()
        .filter(|(product, cents)| {
            let key = format!("SKU-{product:04}");
            sim.target.body_of(&key).is_some_and(|body| {
                body.contains(&format!("\"{}.{:02}\"", *cents / 100, *cents % 100))
            })
        })
        .count()
}

/// Sends the edits; returns the answers and each product's last price (in cents).
async fn send_edits(
    sender: &Sender,
    url: &str,
    edits: usize,
) -> (BTreeMap<String, usize>, BTreeMap<usize, i64>) {
    let gate = Arc::new(Semaphore::new(32));
    let base = simulate::unix_now() * 1_000_000;
    let now = simulate::unix_now();
    let mut tasks = Vec::with_capacity(edits);
    let mut final_price = BTreeMap::new();
    for n in 0..edits {
        let product = n % PRODUCTS;
        let price_cents = 1000 + n as i64;
        final_price.insert(product, price_cents);
        let permit = gate.clone().acquire_owned().await;
        let sender = sender.clone();
        let url = url.to_owned();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let key = format!("SKU-{product:04}");
            let edit = Edit {
                key: &key,
                family: family_of(product),
                updated_us: base + n as i64,
                price_cents,
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
    (statuses, final_price)
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
