//! Unit tests of reading and checking flow files.
