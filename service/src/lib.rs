//! The QuickChat server.
//!
//! A request arrives over gRPC or gRPC-web, optionally over [`tls`] ([`startup`] builds the
//! tonic server, with health checks, reflection and [`cors`]) and reaches one of the
//! handlers in [`api`]. A handler turns the raw request into [`domain`] types (validation
//! happens there and nowhere else), authenticates the caller with [`auth`] (JWT access
//! tokens, member tokens, refresh-token rotation, OpenID Connect), and reads or writes
//! through the [`store`] (sea-orm over SQLite by default, or PostgreSQL).
//!
//! Room traffic goes through the [`chat`] hub: a send is placed in its room by the
//! [`relay`] (which assigns the offset and fans it out to every open stream of the room),
//! made durable by the [`log`] (whose persister writes batches to the store), then
//! acknowledged. [`room`] holds the types they share. Every failure is an [`error::ApiError`], which is turned into
//! a `tonic::Status` in exactly one place so that internal details never reach a client.
//! [`settings`] holds the typed configuration, [`telemetry`] the tracing setup and
//! [`metrics`] the Prometheus metrics. [`web`] serves the browser app on the same port.

pub mod api;
pub mod auth;
pub mod chat;
pub mod cors;
pub mod domain;
pub mod error;
pub mod log;
pub mod metrics;
pub mod rate_limit;
pub mod relay;
pub mod room;
pub mod settings;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod web;

pub use settings::Settings;
pub use startup::Application;
