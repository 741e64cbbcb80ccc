//! Integration tests live in `tests/api/`; see `tests/api/helpers.rs`.
