//! Support shared by QuickChat's end-to-end suites (`tests/api`, `tests/cluster`,
//! `tests/cli`): server nodes and persisters as real processes ([`process`]) and a TCP proxy
//! a test can cut or freeze ([`proxy`]).
//!
//! The binaries of this crate are the programs those suites run: `qc-node` is the server
//! (`quickchat-server`'s program, `startup::main`) and `qc-cli` the `quickchat` command line.

pub mod process;
pub mod proxy;
