//! Black-box tests of running the relay as a service: wake-up pushes
//! through real stand-in provider servers, Prometheus metrics, and the
//! configuration reference checked against `--help`.

mod docs;
mod logs;
mod metrics;
mod standin;
#[path = "../relay/support.rs"]
#[allow(unused_imports)]
mod support;
mod wakeups;
