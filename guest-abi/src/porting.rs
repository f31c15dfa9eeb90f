//! The porting guide, continued.
//!
//! # Errno tables
