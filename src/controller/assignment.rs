//! Rack-aware replica assignment.
