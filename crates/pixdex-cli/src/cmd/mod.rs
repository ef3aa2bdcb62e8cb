//! One module per subcommand.

pub mod embed;
