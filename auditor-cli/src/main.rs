//! `arcane-audit`: Auditor and witness tools: inclusion, consistency, monitoring, replay, reproducible releases.
//!
//! This component is not built yet; the binary exists so the workspace has its final shape.
//! It refuses to run rather than pretend to work.

fn main() -> std::process::ExitCode {
    eprintln!(
        "arcane-audit: not implemented yet (Auditor and witness tools: inclusion, consistency, monitoring, replay, reproducible releases.)"
    );
    std::process::ExitCode::from(2)
}
