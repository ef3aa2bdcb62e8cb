//! The collection on a real sled database in a temp folder.

mod fixtures;
mod lifecycle;
mod recall;
mod dedup;
mod similar;
