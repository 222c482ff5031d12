//! Proxy (skeleton).
