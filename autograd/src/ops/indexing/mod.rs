//! Indexing: ops that pick, place or join elements by index.

mod cat;
mod gather;
mod index;
mod index_select;
mod one_hot;
mod scatter_add;

pub use index::{s, Indexer, TensorIndex, ELLIPSIS, NEW_AXIS};
