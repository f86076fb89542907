//! Rate limits are shared by the nodes (Redis), not multiplied by them.

use crate::cluster;

/// A burst of N spread over three nodes gives N requests in total, not 3N.
#[tokio::test]
async fn a_burst_is_shared_by_all_nodes() {
    const BURST: usize = 6;
    let Some(nodes) = cluster(
        "cluster::a_burst_is_shared_by_all_nodes",
        &[
            "--ip-rate-limit-burst",
            "6",
            "--ip-rate-limit-per-sec",
            "0.01",
        ],
    )
    .await
    else {
        return;
    };
    let user = nodes[0].register(0).await;
    let mut allowed = 0;
    let mut limited = 0;
    for i in 0..BURST * 3 {
        let resp = nodes[i % 3].get_bundle(&user.id).await;
        match resp.status().as_u16() {
            200 => allowed += 1,
            429 => {
                let retry_after: u64 = resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .expect("retry-after in whole seconds");
                assert!(retry_after >= 1);
                limited += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(
        (allowed, limited),
        (BURST, BURST * 2),
        "one bucket for the whole cluster"
    );
}
