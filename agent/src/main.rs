//! `droidfleet-agent`: hosts simulated Android devices.
#![forbid(unsafe_code)]

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Simulated Android devices for droidfleet", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// Host devices that enroll with a control plane, take its commands, and expose a harness.
    /// Boxed: far larger than the other command's arguments.
    Run(Box<droidfleet_agent::cli::RunArgs>),
    /// Hand a device the token from `droidfleet admin re-enroll`; it enrolls again by itself.
    ReEnroll(droidfleet_agent::cli::ReEnrollArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Run(args) => {
            droidfleet_agent::cli::run(*args, droidfleet_agent::cli::shutdown_signal()).await?
        }
        Command::ReEnroll(args) => droidfleet_agent::cli::re_enroll(args).await?,
    }
    Ok(())
}
