//! Black-box tests of the vault guardian: real `obscura guardian` processes on
//! ephemeral ports, spoken to over HTTP, raw TCP and the binary peer protocol.

mod api_v1;
mod auth;
mod cache;
mod cluster;
mod common;
mod docs;
mod limits;
mod observability;
mod storage;
mod v2;
