//! `node`: the program under the name the user first asked for (see
//! `chatchain`, the same program under a name that collides with nothing).

fn main() -> std::process::ExitCode {
    node::main()
}
