//! The persisted metadata log.
