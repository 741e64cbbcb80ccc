//! One test binary for the whole API (see `helpers::spawn_app`). The database backend comes
//! from the environment: SQLite in a temporary directory by default, PostgreSQL (a fresh
//! database per test) when `QUICKCHAT_TEST_DATABASE_URL` is set.

mod auth;
mod chat;
mod chat_client;
mod groups;
mod helpers;
mod join;
mod oidc;
mod server;
