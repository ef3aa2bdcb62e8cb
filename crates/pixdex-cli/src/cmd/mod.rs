//! One module per subcommand.

pub mod dedup;
pub mod embed;
pub mod index;
pub mod region;
pub mod search;
pub mod serve;
pub mod stats;
