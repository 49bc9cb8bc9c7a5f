//! Loading and validation.
