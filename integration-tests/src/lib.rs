//! End-to-end tests of QuickChat. The tests live in `tests/api/` (one binary): each starts
//! the real server on port 0 against a real database and calls it with real tonic clients.
