//! Local forge.
