//! The `quickchat` binary: parse the command line, run it, print any error as one line and
//! exit with its code (see [`quickchat_cli::error`]).

use clap::Parser;
use quickchat_cli::args::Cli;

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // --help and --version print to stdout and succeed; usage errors exit 1.
            let _ = err.print();
            std::process::exit(if err.use_stderr() { 1 } else { 0 });
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(quickchat_cli::run(cli)) {
        Ok(()) => 0,
        Err(err) => {
            eprintln!("error: {err}");
            err.exit_code()
        }
    };
    // Exit without waiting for a thread blocked reading the terminal.
    std::process::exit(code);
}
