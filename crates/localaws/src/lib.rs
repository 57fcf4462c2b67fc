//! localaws
