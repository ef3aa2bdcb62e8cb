//! The collection on a real sled database in a temp folder.

mod dedup;
mod fixtures;
mod lifecycle;
mod recall;
mod region;
mod similar;
