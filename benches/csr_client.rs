//! One create → issued round trip of `KubeCsrClient` against the HTTPS fake of the CSR API
//! (tests/common): POST the CSR, list, watch, receive the issued certificate. The fake approves
//! and signs (ECDSA P-256 CA) as soon as the watch opens, so the figure is the client's
//! protocol and TLS cost plus the fake's signing, on loopback.
//!
//! - `reused_client`: one client for every round trip (pooled connection).
//! - `new_client_per_attempt`: a client per round trip, as the manager's factory does (fresh
//!   agent, so a full TLS handshake with client authentication).

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Duration;

use certrotate::{Cancel, CsrClient};
use common::*;
use criterion::{Criterion, criterion_group, criterion_main};

fn round_trip(c: &mut Criterion) {
    let api = FakeApi::auto_issuing();
    let node = api.server.client_cert("system:node:bench");
    let builder = api.builder().client_certificate(&node);
    let (_key, req) = new_request(CLIENT_SIGNER, &client_usages());
    let mut g = c.benchmark_group("create_to_issued");
    g.measurement_time(Duration::from_secs(5));

    let client = builder.build().unwrap();
    g.bench_function("reused_client", |b| {
        b.iter(|| {
            let csr = client.create(&req, &Cancel::new()).unwrap();
            black_box(
                client
                    .wait_for_certificate(&csr, Duration::from_secs(30), &Cancel::new())
                    .unwrap(),
            )
        })
    });
    g.bench_function("new_client_per_attempt", |b| {
        b.iter(|| {
            let client = builder.client_for(Some(&node)).unwrap();
            let csr = client.create(&req, &Cancel::new()).unwrap();
            black_box(
                client
                    .wait_for_certificate(&csr, Duration::from_secs(30), &Cancel::new())
                    .unwrap(),
            )
        })
    });
    g.finish();
}

criterion_group!(benches, round_trip);
criterion_main!(benches);
