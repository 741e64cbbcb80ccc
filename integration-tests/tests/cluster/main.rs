//! Distributed mode end to end: several server nodes on loopback ports sharing one
//! PostgreSQL, one Redis and one Kafka-protocol broker, as behind a load balancer.
//!
//! Endpoints come from `QUICKCHAT_TEST_DATABASE_URL` (default: the local PostgreSQL),
//! `QUICKCHAT_TEST_REDIS_URL` (default: the local Redis) and `QUICKCHAT_TEST_KAFKA_BROKERS`
//! (required: `scripts/test.sh` starts a broker and sets it). Each test gets its own
//! database, Redis key prefix, Kafka topic and consumer group, so tests run in parallel.

mod faults;
mod killed;
mod multi_node;
mod nodes;
mod takeover;
mod traffic;

use quickchat_integration_tests::{app as helpers, chat_client, process, proxy};
