//! The server through its router, request by request, on a real SQLite file.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)] // tests: a failed unwrap is a failed test

mod bank;
mod banks;
mod connections;
mod demo;
mod engine;
mod events;
mod harness;
mod isolation;
mod journey;
mod malformed;
mod oauth;
mod openapi;
mod ops;
mod portal;
mod refresh;
mod replicas;
mod users;
mod webhooks;
mod worker;
