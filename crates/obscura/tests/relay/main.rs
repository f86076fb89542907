//! Black-box tests of `obscura relay`: each test starts the real binary on
//! ephemeral ports with its own data directory and talks HTTP, WebSocket or
//! raw TCP to it like a client would. The contract is
//! `notes/RELAY-CONTRACT.md` + the OpenAPI/protobuf specs.

mod accounts;
mod attachments;
mod compat;
mod config;
mod connections;
mod durability;
mod gateway;
mod keys;
mod limits;
mod messages;
mod operations;
mod push_tokens;
mod sessions;
mod support;
