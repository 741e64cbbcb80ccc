//! Support shared by QuickChat's end-to-end suites (`tests/api`, `tests/cluster`,
//! `tests/cli`): a real server on port 0 in the test's own process and the calls every test
//! makes of it ([`app`]), a `Chat` stream client ([`chat_client`]), server nodes and
//! persisters as real processes ([`process`]), a TCP proxy a test can cut or freeze
//! ([`proxy`]), where PostgreSQL, Redis and Kafka come from — the environment or containers
//! ([`services`]) — and a Redis and a broker of one test's own to break ([`private`]).
//!
//! The binaries of this crate are the programs those suites run: `qc-node` is the server
//! (`quickchat-server`'s program, `startup::main`) and `qc-cli` the `quickchat` command line.

pub mod app;
pub mod chat_client;
pub mod private;
pub mod process;
pub mod proxy;
pub mod services;
