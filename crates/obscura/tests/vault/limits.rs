//! Body limits as an ordinary client meets them: a client that is still
//! writing an over-limit body must receive the 400, not a reset (the
//! guardian ends such connections with a lingering close), and the
//! lingering is bounded.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::{Guardian, err, identity, parse_response, status_json};

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;

/// How a body is framed on the wire.
#[derive(Debug, Clone, Copy)]
enum Framing {
    ContentLength,
    Chunked,
}

fn body(framing: Framing, len: usize) -> reqwest::Body {
    match framing {
        Framing::ContentLength => vec![b' '; len].into(),
        Framing::Chunked => {
            let chunks = (0..len)
                .step_by(64 * KIB)
                .map(move |at| Ok::<_, std::io::Error>(vec![b' '; (len - at).min(64 * KIB)]));
            reqwest::Body::wrap_stream(futures::stream::iter(chunks))
        }
    }
}

/// Every route that reads a body, with its limit; sizes just over the limit
/// and well beyond it (larger than the socket buffers, so the client is
/// certainly still writing when the answer comes), in both framings, several
/// times over: every attempt must get the documented answer.
#[tokio::test]
async fn over_limit_bodies_get_their_answer_not_a_reset() {
    let g = Guardian::start(&[]).await;
    let token = g.session(&identity(), "v2").await;
    let routes: [(Method, &str, usize); 7] = [
        (Method::POST, "/v1/vault/push", MIB),
        (Method::PUT, "/v2/vault/secrets/limit", MIB),
        (Method::POST, "/v1/vault/pull", 4 * KIB),
        (Method::POST, "/v1/vault/auth/challenge", 64 * KIB),
        (Method::POST, "/v1/vault/auth/session", 64 * KIB),
        (Method::POST, "/v2/vault/auth/challenge", 64 * KIB),
        (Method::POST, "/v2/vault/auth/session", 64 * KIB),
    ];
    for (method, path, limit) in routes {
        for framing in [Framing::ContentLength, Framing::Chunked] {
            for len in [limit + 1, 3 * MIB] {
                for attempt in 0..3 {
                    let resp = g
                        .client
                        .request(method.clone(), g.url(path))
                        .header("x-session-token", &token)
                        .body(body(framing, len))
                        .send()
                        .await
                        .unwrap_or_else(|e| {
                            panic!("{method} {path} {framing:?} {len} B #{attempt}: {e:?}")
                        });
                    assert_eq!(
                        status_json(resp).await,
                        (400, err("request body too large")),
                        "{method} {path} {framing:?} {len} B"
                    );
                }
            }
        }
    }
}

/// Answers given before the body is read for other reasons (no session, an
/// unknown route, a rate limit) leave the body unread too.
#[tokio::test]
async fn early_answers_to_large_bodies_reach_the_client() {
    async fn send(g: &Guardian, method: Method, path: &str, len: usize) -> (u16, Value) {
        let req = g
            .client
            .request(method, g.url(path))
            .body(body(Framing::ContentLength, len));
        status_json(req.send().await.expect("an answer, not a reset")).await
    }
    let g = Guardian::start(&[]).await;
    for _ in 0..3 {
        assert_eq!(
            send(&g, Method::PUT, "/v2/vault/secrets/x", MIB).await,
            (401, err("missing session token"))
        );
        assert_eq!(
            send(&g, Method::POST, "/v1/vault/nothing", 2 * MIB).await,
            (404, err("not found"))
        );
    }
    let g = Guardian::start(&["--rate-limit-ip-per-min", "1", "--rate-limit-ip-burst", "1"]).await;
    assert_eq!(g.pull(&identity()).await, (404, err("share not found")));
    // The pull spent the per-IP burst: this push is refused unread.
    assert_eq!(
        send(&g, Method::POST, "/v1/vault/push", MIB).await,
        (429, err("rate limit exceeded"))
    );
}

/// Lingering has a budget: a client that goes on sending after its answer
/// is cut off after a few MiB, instead of holding the connection.
#[tokio::test]
async fn lingering_after_an_answer_is_bounded() {
    let g = Guardian::start(&[]).await;
    let mut s = TcpStream::connect(g.server.addr("http")).await.unwrap();
    s.write_all(b"POST /v1/vault/push HTTP/1.1\r\nHost: x\r\nContent-Length: 1073741824\r\n\r\n")
        .await
        .unwrap();
    let (mut rd, mut wr) = s.into_split();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        let _ = rd.read_to_end(&mut buf).await;
        buf
    });
    let chunk = vec![b' '; 64 * KIB];
    let mut sent = 0usize;
    let cut_off = tokio::time::timeout(Duration::from_secs(30), async {
        while wr.write_all(&chunk).await.is_ok() {
            sent += chunk.len();
            assert!(sent < 256 * MIB, "still accepted {sent} bytes");
        }
    })
    .await;
    assert!(cut_off.is_ok(), "connection still open after {sent} bytes");
    let answer = reader.await.unwrap();
    assert_eq!(
        parse_response(&answer),
        (400, err("request body too large"))
    );
}
