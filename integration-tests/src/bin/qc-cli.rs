//! `quickchat` built inside this crate, so that the CLI suite (`tests/cli`) runs the real
//! command line against real server processes (`qc-node`). The same program as the CLI's
//! own binary: both call `quickchat_cli::main`.

fn main() {
    quickchat_cli::main()
}
