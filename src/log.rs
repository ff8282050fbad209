//! The tamper-evident log.
pub mod merkle;
