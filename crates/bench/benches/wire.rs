//! Micro-benchmarks of the pure functions on the servers' hot paths:
//! protobuf framing (every message is decoded once and framed once),
//! XEdDSA verification (every registration and key upload), HMAC-SHA256
//! checks (every guardian challenge/session). Run: `cargo bench -p obscura-bench`.

use criterion::{BenchmarkId, Criterion, Throughput, black_box, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use obscura_keys::KeyPair;
use obscura_proto::web_socket_frame::Payload;
use obscura_proto::{AckMessage, EncryptedMessage, Envelope, WebSocketFrame};
use prost::Message;
use sha2::Sha256;

fn envelope_frame(content_len: usize) -> WebSocketFrame {
    WebSocketFrame {
        payload: Some(Payload::Envelope(Envelope {
            id: "6f1c7d3e-9a4b-4c2d-8e1f-0a2b3c4d5e6f".into(),
            source_user_id: "0d9e8f7a-6b5c-4d3e-2f1a-0b9c8d7e6f5a".into(),
            timestamp: 1_700_000_000_123,
            message: Some(EncryptedMessage {
                r#type: 2,
                content: vec![0xA5; content_len],
            }),
        })),
    }
}

fn protobuf(c: &mut Criterion) {
    let mut g = c.benchmark_group("protobuf");
    for size in [64usize, 1024, 64 * 1024] {
        let frame = envelope_frame(size);
        let bytes = frame.encode_to_vec();
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_with_input(
            BenchmarkId::new("envelope_frame_encode", size),
            &frame,
            |b, f| b.iter(|| black_box(f).encode_to_vec()),
        );
        g.bench_with_input(
            BenchmarkId::new("envelope_frame_decode", size),
            &bytes,
            |b, x| b.iter(|| WebSocketFrame::decode(black_box(x.as_slice())).expect("valid frame")),
        );
        let message = EncryptedMessage {
            r#type: 2,
            content: vec![0xA5; size],
        }
        .encode_to_vec();
        g.bench_with_input(
            BenchmarkId::new("encrypted_message_decode", size),
            &message,
            |b, x| {
                b.iter(|| EncryptedMessage::decode(black_box(x.as_slice())).expect("valid message"))
            },
        );
    }
    let ack = WebSocketFrame {
        payload: Some(Payload::Ack(AckMessage {
            message_id: String::new(),
            message_ids: (0..100)
                .map(|i| format!("6f1c7d3e-9a4b-4c2d-8e1f-0a2b3c4d{i:04x}"))
                .collect(),
        })),
    };
    let bytes = ack.encode_to_vec();
    g.throughput(Throughput::Elements(100));
    g.bench_function("ack_frame_100_ids_encode", |b| {
        b.iter(|| black_box(&ack).encode_to_vec())
    });
    g.bench_function("ack_frame_100_ids_decode", |b| {
        b.iter(|| WebSocketFrame::decode(black_box(bytes.as_slice())).expect("valid frame"))
    });
    g.finish();
}

fn xeddsa(c: &mut Criterion) {
    let mut rng = rand_core::OsRng;
    let identity = KeyPair::generate(&mut rng);
    let signed = KeyPair::generate(&mut rng).public().to_bytes();
    let signature = identity.sign(&signed, &mut rng);
    let public = identity.public();
    let mut g = c.benchmark_group("xeddsa");
    g.bench_function("verify_signed_pre_key", |b| {
        b.iter(|| {
            public
                .verify_signature(black_box(&signed), black_box(&signature))
                .expect("valid signature")
        })
    });
    g.bench_function("sign_signed_pre_key", |b| {
        b.iter(|| identity.sign(black_box(&signed), &mut rng))
    });
    g.bench_function("public_key_parse", |b| {
        b.iter(|| obscura_keys::PublicKey::from_bytes(black_box(&signed)).expect("valid key"))
    });
    g.finish();
}

fn hmac_sha256(c: &mut Criterion) {
    let key = [7u8; 32];
    // A guardian challenge: identity (64 hex) || nonce (32) || created_ns (16).
    let message = [0x42u8; 64 + 32 + 16];
    let tag = {
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
        mac.update(&message);
        mac.finalize().into_bytes()
    };
    let mut g = c.benchmark_group("hmac_sha256");
    g.bench_function("verify_challenge_tag", |b| {
        b.iter(|| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
            mac.update(black_box(&message));
            mac.verify_slice(black_box(&tag)).expect("valid tag")
        })
    });
    g.finish();
}

criterion_group!(benches, protobuf, xeddsa, hmac_sha256);
criterion_main!(benches);
