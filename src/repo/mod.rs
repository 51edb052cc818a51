//! Repository content: a file tree at a commit (read straight from git objects) or in a
//! directory ([`tree`]), and the bare git mirrors commits are fetched into ([`mirror`]).
//! The launch spec (`spec`) and publishing (`catalog`) both read repositories through here.

pub mod mirror;
pub mod tree;

pub use tree::{CommitTree, DirTree, EntryKind, FileTree, TreeError};
