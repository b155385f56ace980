//! `arcane-gateway`: OHTTP gateway, oblivious relay, identity and token services, node registry and routing.
//!
//! This component is not built yet; the binary exists so the workspace has its final shape.
//! It refuses to run rather than pretend to work.

fn main() -> std::process::ExitCode {
    eprintln!(
        "arcane-gateway: not implemented yet (OHTTP gateway, oblivious relay, identity and token services, node registry and routing.)"
    );
    std::process::ExitCode::from(2)
}
