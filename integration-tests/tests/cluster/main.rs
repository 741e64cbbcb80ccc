//! Distributed mode end to end: several server nodes on loopback ports sharing one
//! PostgreSQL, one Redis and one Kafka-protocol broker, as behind a load balancer.
//!
//! The services come from `QUICKCHAT_TEST_DATABASE_URL`, `QUICKCHAT_TEST_REDIS_URL` and
//! `QUICKCHAT_TEST_KAFKA_BROKERS` (`scripts/test.sh` sets them to local services), or else
//! from containers the tests start (see the support library's `services`). Each test gets
//! its own database, Redis key prefix, Kafka topic and consumer group, so tests run in
//! parallel.

mod admin;
mod faults;
mod killed;
mod members;
mod multi_node;
mod nodes;
mod takeover;
mod traffic;

use quickchat_integration_tests::{app as helpers, chat_client, private, process, proxy, services};
