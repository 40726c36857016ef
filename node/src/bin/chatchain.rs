//! `chatchain`: the node under a name that collides with nothing (`node`
//! is Node.js on many machines); the same program as `node`.

fn main() -> std::process::ExitCode {
    node::main()
}
