//! `droidfleet-agent`: hosts simulated Android devices.
#![forbid(unsafe_code)]

use clap::Parser;

#[derive(Parser)]
#[command(version, about = "Simulated Android devices for droidfleet", long_about = None)]
struct Cli {
    /// How log lines are written to stderr: text for people, json (one object per line, with
    /// every span's fields) for log pipelines.
    #[arg(long, global = true, value_enum, default_value_t)]
    log_format: droidfleet_agent::cli::LogFormat,
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
    let cli = Cli::parse();
    droidfleet_agent::cli::init_logging(cli.log_format, "info");
    match cli.command {
        Command::Run(args) => {
            droidfleet_agent::cli::run(*args, droidfleet_agent::cli::shutdown_signal()).await?
        }
        Command::ReEnroll(args) => droidfleet_agent::cli::re_enroll(args).await?,
    }
    Ok(())
}
