//! One test binary for the whole API on one node (see `quickchat_integration_tests::app::spawn_app`). The database
//! backend comes from the environment: SQLite in a temporary directory by default,
//! PostgreSQL (a fresh database per test, on `QUICKCHAT_TEST_DATABASE_URL` or the local
//! server) when `QUICKCHAT_TEST_STORE=postgres`.

mod abuse;
mod abuse_auth;
mod admin;
mod auth;
mod authz_matrix;
mod chat;
mod claims;
mod cors;
mod dead_letters;
mod deploy;
mod groups;
mod join;
mod key_rotation;
mod members;
mod oidc;
mod server;
mod tls;
mod web;

// Paths as before the support moved into the library: `crate::helpers::…`.
use quickchat_integration_tests::{app as helpers, chat_client};
