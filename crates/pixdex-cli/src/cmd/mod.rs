//! One module per subcommand.

pub mod config;
pub mod dedup;
pub mod embed;
pub mod index;
pub mod region;
pub mod search;
pub mod serve;
pub mod stats;

/// Prints query results: `{"results":[…]}` with `--json`, else one line each.
pub(crate) fn print_results<T: serde::Serialize>(
    results: &[T],
    json: bool,
    line: impl Fn(&T) -> String,
) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct Output<'a, T> {
        results: &'a [T],
    }
    if json {
        println!("{}", serde_json::to_string(&Output { results })?);
    } else {
        results.iter().for_each(|r| println!("{}", line(r)));
    }
    Ok(())
}
