//! End-to-end tests of the `quickchat` binary: each test runs a real QuickChat server
//! (embedded default: SQLite in a temp dir, port 0) and drives the real binary with its own
//! config directories, asserting what a user sees: stdout, stderr and exit codes.

mod auth;
mod chat;
mod claims;
mod groups;
mod helpers;
mod members;
mod terminal;
mod tls;
