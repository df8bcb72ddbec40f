use serde_json::json;

use super::fake::{self, FakeAkeneo};
use super::*;

fn client(fake: &FakeAkeneo) -> AkeneoClient {
    let mut settings = AkeneoSettings::new(
        &format!("{}/", fake.base_url()),
        fake::CLIENT_ID,
        fake::SECRET,
        fake::USERNAME,
        fake::PASSWORD,
    );
    settings.request_timeout = Duration::from_secs(5);
    AkeneoClient::new(settings).unwrap()
}

fn uuid(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

async fn catalog(products: u32) -> FakeAkeneo {
    let fake = FakeAkeneo::start().await;
    for n in 0..products {
        fake.put_product(fake::product(
            &uuid(n),
            &format!("SKU-{n}"),
            &format!("2026-01-{:02}T10:00:00+00:00", 1 + n % 28),
            &format!("Chair {n}"),
        ));
    }
    fake
}

#[tokio::test]
async fn logs_in_once_and_reuses_the_token() {
    let fake = catalog(3).await;
    let client = client(&fake);
    assert!(client.product(&uuid(1)).await.unwrap().is_some());
    assert!(client.product(&uuid(2)).await.unwrap().is_some());
    let state = fake.state();
    assert_eq!((state.logins, state.refreshes), (1, 0));
}

#[tokio::test]
async fn refreshes_before_expiry_and_logs_in_again_when_refresh_fails() {
    let fake = catalog(1).await;
    // Shorter than the renewal margin: every call finds the token due for renewal.
    fake.state().token_ttl = 10;
    let client = client(&fake);
    client.product(&uuid(0)).await.unwrap();
    client.product(&uuid(0)).await.unwrap();
    {
        let state = fake.state();
        assert_eq!(
            (state.logins, state.refreshes),
            (1, 1),
            "second call refreshed"
        );
    }
    fake.state().refuse_refresh = true;
    client.product(&uuid(0)).await.unwrap();
    let state = fake.state();
    assert_eq!(
        (state.logins, state.refreshes),
        (2, 1),
        "refused refresh → login"
    );
}

#[tokio::test]
async fn a_401_on_a_call_gets_a_new_token_once() {
    let fake = catalog(1).await;
    let client = client(&fake);
    client.product(&uuid(0)).await.unwrap();
    fake.expire_tokens();
    assert!(client.product(&uuid(0)).await.unwrap().is_some());
    let state = fake.state();
    assert_eq!(state.logins + state.refreshes, 2);
}

#[tokio::test]
async fn wrong_credentials_are_an_auth_error() {
    let fake = catalog(1).await;
    let mut settings = AkeneoSettings::new(
        &fake.base_url(),
        fake::CLIENT_ID,
        fake::SECRET,
        fake::USERNAME,
        "wrong",
    );
    settings.request_timeout = Duration::from_secs(5);
    let client = AkeneoClient::new(settings).unwrap();
    let error = client.product(&uuid(0)).await.unwrap_err();
    assert!(matches!(error, AkeneoError::Auth(_)), "{error:?}");
    assert!(!error.is_retryable());
    assert!(!format!("{error}").contains("wrong"));
}

#[tokio::test]
async fn unknown_product_is_none() {
    let fake = catalog(1).await;
    let client = client(&fake);
    assert_eq!(client.product("no-such-uuid").await.unwrap(), None);
    assert_eq!(client.product_model("no_model").await.unwrap(), None);
    fake.put_model(fake::product_model(
        "chair_model",
        "2026-01-01T00:00:00+00:00",
        "M",
    ));
    let model = client.product_model("chair_model").await.unwrap().unwrap();
    assert_eq!(model["code"], "chair_model");
}

#[tokio::test]
async fn pages_follow_next_links_on_the_configured_host() {
    let fake = catalog(25).await;
    let client = client(&fake);
    let mut query = ListQuery::new(Resource::Products);
    query.limit = 10;
    query.with_count = true;
    let mut page = client.first_page(&query).await.unwrap();
    assert_eq!(page.items_count, Some(25));
    let mut seen = Vec::new();
    let mut pages = 1;
    loop {
        seen.extend(
            page.items
                .iter()
                .map(|p| p["identifier"].as_str().unwrap().to_owned()),
        );
        let Some(next) = page.next.take() else { break };
        assert!(next.starts_with("http://pim.invalid/"));
        page = client.next_page(&next).await.unwrap();
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 25);
    let mut sorted = seen.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 25, "no item twice");
}

#[tokio::test]
async fn search_filters_reach_the_api() {
    let fake = catalog(30).await;
    let client = client(&fake);
    let mut query = ListQuery::new(Resource::Products);
    query.search = Some(updated_after("2026-01-25 00:00:00"));
    let page = client.first_page(&query).await.unwrap();
    // Days 25..=28 of the cycle: n % 28 in 24..=27 → n in {24,25,26,27}.
    assert_eq!(page.items.len(), 4);

    let wanted = vec![uuid(3), uuid(29), "gone".to_owned()];
    let found = client.products_by_uuid(&wanted).await.unwrap();
    let mut identifiers: Vec<_> = found
        .iter()
        .map(|p| p["identifier"].as_str().unwrap())
        .collect();
    identifiers.sort();
    assert_eq!(identifiers, ["SKU-29", "SKU-3"]);
    let last = fake.requests().last().unwrap().clone();
    assert!(last.contains(r#""operator":"IN""#), "{last}");
}

#[tokio::test]
async fn throttling_is_waited_out_a_bounded_number_of_times() {
    let fake = catalog(1).await;
    let client = client(&fake);
    fake.state().throttle = 2;
    assert!(client.product(&uuid(0)).await.unwrap().is_some());
    assert_eq!(fake.state().throttled, 2);

    fake.state().throttle = 100;
    let error = client.product(&uuid(0)).await.unwrap_err();
    assert!(matches!(error, AkeneoError::Throttled { .. }), "{error:?}");
    assert!(error.is_retryable());
    // The first try plus max_throttle_retries.
    assert_eq!(fake.state().throttled, 2 + 6);
}

#[tokio::test]
async fn unreachable_pim_is_retryable() {
    let mut settings = AkeneoSettings::new("http://127.0.0.1:9", "a", "b", "c", "d");
    settings.max_transient_retries = 0;
    let client = AkeneoClient::new(settings).unwrap();
    let error = client.product("x").await.unwrap_err();
    assert!(error.is_retryable(), "{error:?}");
}

#[test]
fn settings_debug_hides_secrets() {
    let settings = AkeneoSettings::new("https://pim", "id", "s3cret", "user", "pa55");
    let text = format!("{settings:?}");
    assert!(!text.contains("s3cret") && !text.contains("pa55"), "{text}");
}

#[test]
fn filters_have_akeneo_shape() {
    assert_eq!(
        uuid_in(&["a".into()]),
        json!({"uuid": [{"operator": "IN", "value": ["a"]}]})
    );
    assert_eq!(
        updated_after("2026-01-01 00:00:00"),
        json!({"updated": [{"operator": ">", "value": "2026-01-01 00:00:00"}]})
    );
}
