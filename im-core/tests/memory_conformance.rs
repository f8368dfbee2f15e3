//! The in-memory backend passes the store conformance suite.

imkit_core::conformance_tests!(async { Some(((), imkit_core::store::Stores::memory())) });
