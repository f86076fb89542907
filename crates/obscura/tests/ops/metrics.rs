//! `GET /metrics` on the management port, parsed as Prometheus text.

use prometheus_parse::{Sample, Scrape, Value};
use serde_json::json;

use crate::standin::{StandIn, always};
use crate::support::*;

/// One parsed scrape.
pub struct Metrics(Scrape);

/// Scrapes the relay's management port and parses the exposition.
pub async fn scrape(relay: &Relay) -> Metrics {
    let resp = relay
        .http
        .get(relay.mgmt_url("/metrics"))
        .send()
        .await
        .expect("scrape");
    assert_eq!(resp.status().as_u16(), 200);
    let content_type = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    let text = resp.text().await.expect("body");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    Metrics(Scrape::parse(lines).expect("valid Prometheus text format"))
}

impl Metrics {
    fn matching<'a>(
        &'a self,
        name: &'a str,
        labels: &'a [(&'a str, &'a str)],
    ) -> impl Iterator<Item = &'a Sample> + 'a {
        self.0.samples.iter().filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
    }

    /// Sum of the counter/gauge samples of `name` carrying `labels` (0 if none).
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .map(|s| match &s.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => *v,
                _ => 0.0,
            })
            .sum()
    }

    pub fn has(&self, name: &str) -> bool {
        self.0.samples.iter().any(|s| s.metric == name)
    }

    /// Observations in the histogram `name` with `labels` (its +Inf bucket).
    pub fn histogram_count(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.matching(name, labels)
            .filter_map(|s| match &s.value {
                Value::Histogram(buckets) => buckets
                    .iter()
                    .find(|b| b.less_than.is_infinite())
                    .map(|b| b.count),
                _ => None,
            })
            .sum()
    }
}

const MESSAGES_ROUTE: &[(&str, &str)] = &[
    ("route", "/v1/messages/:recipient_id"),
    ("method", "POST"),
    ("status", "201"),
];

#[tokio::test]
async fn metrics_are_exported_and_move_with_traffic() {
    let up = StandIn::start(always(201, "{}")).await;
    let relay = Relay::start_with(&[
        "--unifiedpush-allow-private",
        "--push-delay-ms",
        "100",
        "--ip-rate-limit-per-sec",
        "0.001",
        "--ip-rate-limit-burst",
        "3",
    ])
    .await;
    let sender = relay.register(12).await;
    let online = relay.register(12).await;
    let offline = relay.register(12).await;
    let resp = relay
        .http
        .put(relay.url("/v1/push-tokens"))
        .bearer_auth(&offline.token)
        .json(&json!({"token": up.url("/wake"), "type": "unifiedpush"}))
        .send()
        .await
        .unwrap();
    expect_empty(resp, 200).await;

    let before = scrape(&relay).await;
    assert!(before.has("obscura_relay_websockets"));
    assert!(before.has("obscura_relay_queued_messages"));
    assert_eq!(before.value("obscura_relay_websockets", &[]), 0.0);
    assert_eq!(before.value("obscura_relay_queued_messages", &[]), 0.0);
    assert_eq!(
        before.value("obscura_relay_http_requests_total", MESSAGES_ROUTE),
        0.0
    );

    // Traffic: a live delivery with an ACK, a wake-up, and rate limiting.
    let mut gateway = relay.connect(&online.token).await;
    relay
        .send_ok(&sender.token, &online.id, &message(1, b"live"))
        .await;
    let envelope = gateway.envelope().await;
    gateway.ack_bulk(&[&envelope.id]).await;
    gateway.sync().await;
    relay
        .send_ok(&sender.token, &offline.id, &message(1, b"queued"))
        .await;
    up.wait_for("/wake", 1).await;
    let mut limited = false;
    for _ in 0..10 {
        if relay.get_bundle(&online.id).await.status().as_u16() == 429 {
            limited = true;
            break;
        }
    }
    assert!(limited, "the per-IP limit was reached");

    // Counters are recorded after the response/ACK flush: poll briefly.
    let settled = eventually(TIMEOUT, || async {
        let m = scrape(&relay).await;
        m.value("obscura_relay_ack_batches_total", &[]) >= 1.0
            && m.value(
                "obscura_relay_pushes_total",
                &[("provider", "unifiedpush"), ("outcome", "sent")],
            ) >= 1.0
    })
    .await;
    assert!(settled, "ACK and push counters moved");
    let after = scrape(&relay).await;
    assert_eq!(
        after.value("obscura_relay_http_requests_total", MESSAGES_ROUTE),
        2.0
    );
    assert!(
        after.histogram_count(
            "obscura_relay_http_request_duration_seconds",
            &[("route", "/v1/messages/:recipient_id"), ("method", "POST")]
        ) >= 2.0
    );
    assert!(
        after.value(
            "obscura_relay_http_requests_total",
            &[("route", "/v1/keys/:user_id"), ("status", "429")]
        ) >= 1.0
    );
    assert!(after.value("obscura_relay_rate_limited_total", &[]) >= 1.0);
    assert_eq!(
        after.value("obscura_relay_messages_enqueued_total", &[]),
        2.0
    );
    assert!(after.value("obscura_relay_deliveries_total", &[]) >= 1.0);
    assert_eq!(after.value("obscura_relay_acked_messages_total", &[]), 1.0);
    assert_eq!(after.value("obscura_relay_websockets", &[]), 1.0);
    // The offline user's message waits in the queue.
    assert_eq!(after.value("obscura_relay_queued_messages", &[]), 1.0);
    // Raw paths (which carry user ids) never become labels.
    assert!(
        !after
            .0
            .samples
            .iter()
            .any(|s| s.labels.values().any(|v| v.contains(&online.id))),
        "no user id in any label"
    );

    gateway.close().await;
    let closed = eventually(TIMEOUT, || async {
        scrape(&relay).await.value("obscura_relay_websockets", &[]) == 0.0
    })
    .await;
    assert!(closed, "the live-socket gauge went back to 0");
}
