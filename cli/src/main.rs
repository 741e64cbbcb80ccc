//! The `quickchat` binary (the program itself is [`quickchat_cli::main`], so the end-to-end
//! suite can build the same program).

fn main() {
    quickchat_cli::main()
}
