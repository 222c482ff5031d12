//! TLS (skeleton).
