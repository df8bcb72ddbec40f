//! Pacing benchmark (issue 4): syncs products to the in-process fake Shopify with a
//! restore rate of 100 points/s and reports the share of the restore rate used and the
//! THROTTLED count. The goal is ≥ 90 % with zero THROTTLED.
//!
//! `cargo bench -p pimsync-connectors --bench shopify_pacing -- [--products N]
//! [--cost POINTS] [--restore POINTS_PER_S] [--bucket POINTS] [--concurrency N]`
//!
//! Defaults: 2,000 products, productSet costing 2 points, a 1,000-point bucket, 8
//! workers: about 30 s. With Shopify's real mutation cost (`--cost 10`) 2,000 products
//! take about 200 s; the share is what matters, and it is the same.

#[path = "../src/shopify/tests/fake.rs"]
mod fake;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pimsync_connectors::mapping::{FieldSource, Mapping};
use pimsync_connectors::shopify::{ShopifySettings, connector};
use pimsync_connectors::{AttributeValue, Connector, Desired, ProductKind, RemoteIds, Snapshot};
use serde_json::json;

struct Args {
    products: usize,
    cost: f64,
    restore: f64,
    bucket: f64,
    concurrency: usize,
}

fn args() -> Args {
    let mut args = Args {
        products: 2000,
        cost: 2.0,
        restore: 100.0,
        bucket: 1000.0,
        concurrency: 8,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = || it.next().and_then(|v| v.parse::<f64>().ok());
        match flag.as_str() {
            "--products" => args.products = number().map_or(args.products, |n| n as usize),
            "--cost" => args.cost = number().unwrap_or(args.cost),
            "--restore" => args.restore = number().unwrap_or(args.restore),
            "--bucket" => args.bucket = number().unwrap_or(args.bucket),
            "--concurrency" => args.concurrency = number().map_or(args.concurrency, |n| n as usize),
            _ => {} // cargo bench passes --bench
        }
    }
    args
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(run(args));
}

async fn run(args: Args) {
    let fake = fake::Fake::start(args.bucket, args.restore).await;
    for op in ["PimsyncProductSet", "PimsyncMetafieldDefinitionCreate"] {
        fake.state().costs.insert(op.into(), args.cost);
    }
    let mut settings = ShopifySettings::new("bench.myshopify.com", "static-token");
    settings.endpoint_override = Some(fake.url.clone());
    let mut mapping = Mapping::default();
    mapping
        .fields
        .insert("title".into(), FieldSource::attribute("name"));
    mapping
        .fields
        .insert("price".into(), FieldSource::attribute("price"));
    let shop = Arc::new(connector(settings, mapping, Duration::from_secs(30)).expect("connector"));
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let (shop, next, total) = (shop.clone(), next.clone(), args.products);
        workers.push(tokio::spawn(async move {
            let mut failures = 0;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return failures;
                }
                let key = format!("SKU-{i:05}");
                let snapshot = snapshot(i);
                let remote = RemoteIds::new();
                let idempotency_key = format!("pimsync-bench-{i}");
                shop.ready().await;
                let result = shop
                    .apply(pimsync_connectors::ApplyRequest {
                        target: "bench",
                        product_key: &key,
                        desired: Desired::Upsert {
                            kind: ProductKind::Product,
                            snapshot: &snapshot,
                            variants: &[],
                        },
                        remote_ids: &remote,
                        idempotency_key: &idempotency_key,
                        attempt: 1,
                        change: Default::default(),
                    })
                    .await;
                if let Err(error) = result {
                    failures += 1;
                    eprintln!("{key}: {error}");
                }
            }
        }));
    }
    let mut failures = 0;
    for worker in workers {
        failures += worker.await.unwrap_or(1);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let state = fake.state();
    // Points paid from the restore flow = spent - what the initial full bucket gave.
    let from_bucket = (args.bucket - state.available).max(0.0);
    let restored = state.points_spent - from_bucket;
    let share = restored / (args.restore * elapsed);
    println!(
        "shopify_pacing: {} products, {} workers, cost {} points/productSet, bucket {} points, restore {} points/s",
        args.products, args.concurrency, args.cost, args.bucket, args.restore
    );
    println!(
        "  elapsed {elapsed:.1} s, requests {}, points spent {:.0} ({from_bucket:.0} from the initial bucket)",
        state.requests.len(),
        state.points_spent
    );
    println!(
        "  restore rate used: {:.1} %   THROTTLED: {}   failed applies: {failures}",
        share * 100.0,
        state.throttled
    );
}

fn snapshot(i: usize) -> Snapshot {
    let mut s = Snapshot::default();
    let value = |data| {
        vec![AttributeValue {
            locale: None,
            scope: None,
            data,
        }]
    };
    s.values
        .insert("name".into(), value(json!(format!("Product {i}"))));
    s.values
        .insert("price".into(), value(json!(format!("{}.90", i % 100))));
    s
}
