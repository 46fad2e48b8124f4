//! Fleet benchmarks: runs the optimised `droidfleet loadtest` a few times per scenario, reads
//! each run's report.json and prints the median (and min/max) of the figures issues 5 and 10 ask
//! for. Loopback only; the control plane runs as its own process (`--control-plane spawn`) so
//! each side is measured apart.
//!
//! ```sh
//! cargo bench --bench fleet -- connect      # 100,000 devices connected, then the control plane
//!                                           # killed and restarted: connect and reconnect times,
//!                                           # memory per device per side
//! cargo bench --bench fleet -- throughput   # 10,000 resets at once, light Argon2, against the baselines
//! cargo bench --bench fleet -- latency      # 10,000 devices at 1,000 resets/s: requested → applied
//! cargo bench --bench fleet -- realistic    # resets with realistic Argon2, against the Argon2 bound
//! cargo bench --bench fleet -- latency --repeat 1 --devices 2000
//! ```
//!
//! Without a scenario it prints this usage and exits, so `cargo bench` or `cargo test
//! --all-targets` never starts a run of many minutes by accident.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, ExitCode, Stdio};

const USAGE: &str = "usage: cargo bench --bench fleet -- <connect|throughput|latency|realistic> \
     [--repeat R] [--devices N]

  connect     N devices (default 100000) enroll and connect (--connect-only): memory per
              connected device on each side, peak RSS per process, connect time; then the
              control plane is killed with SIGKILL and started again: reconnect time
  throughput  N devices (default 10000), light Argon2, every reset issued at once: resets/s,
              echo calls/s, Argon2 bound, and the run's ratio to each
  latency     N devices (default 10000) at 1000 resets/s: requested -> applied p50 and p99,
              achieved issue and accept rates
  realistic   N devices (default 100), realistic Argon2, every reset issued at once: resets/s
              against the Argon2-only bound measured in the same run
  --repeat R  runs per scenario (default 3, at most 20); figures are the median, min and max";

const MAX_REPEAT: usize = 20;

#[derive(Clone, Copy, Debug)]
enum Scenario {
    Connect,
    Throughput,
    Latency,
    Realistic,
}

impl Scenario {
    fn parse(name: &str) -> Option<Scenario> {
        match name {
            "connect" => Some(Scenario::Connect),
            "throughput" => Some(Scenario::Throughput),
            "latency" => Some(Scenario::Latency),
            "realistic" => Some(Scenario::Realistic),
            _ => None,
        }
    }

    fn default_devices(self) -> usize {
        match self {
            Scenario::Connect => 100_000,
            Scenario::Throughput => 10_000,
            Scenario::Latency => 10_000,
            // Each realistic hash holds 19 MiB while it runs and every device hashes at once:
            // 500 devices took the load generator past 22 GiB here and the kernel killed it.
            Scenario::Realistic => 100,
        }
    }

    /// The loadtest options of this scenario, after `--devices`.
    fn options(self, devices: usize) -> Vec<String> {
        let argon2 = match self {
            Scenario::Realistic => "realistic",
            _ => "light",
        };
        let common = ["--control-plane", "spawn", "--argon2", argon2];
        let specific: Vec<String> = match self {
            // A connection per 1,600 devices keeps each HTTP/2 connection's streams moderate;
            // the ramp spreads the handshakes; the deadline grows with the fleet.
            Scenario::Connect => vec![
                "--connect-only".into(),
                "--restart-control-plane".into(),
                "--connections".into(),
                devices.div_ceil(1_600).clamp(1, 64).to_string(),
                "--ramp-up-ms".into(),
                "10000".into(),
                "--deadline".into(),
                (600 + devices / 50).to_string(),
            ],
            // Every device in flight at once: the control plane, not an in-flight limit of the
            // load generator, should be what bounds the rate.
            Scenario::Throughput => vec![
                "--concurrency".into(),
                devices.to_string(),
                "--connections".into(),
                "16".into(),
                "--deadline".into(),
                (300 + devices / 10).to_string(),
            ],
            Scenario::Latency => vec![
                "--rate".into(),
                "1000".into(),
                "--connections".into(),
                "16".into(),
                "--deadline".into(),
                (600 + devices / 10).to_string(),
            ],
            // Realistic Argon2 takes 19 MiB and tens of milliseconds per hash: the devices' own
            // hashing is the bound, and the setup (every user's passcode) takes a while.
            Scenario::Realistic => vec![
                "--concurrency".into(),
                devices.to_string(),
                "--connections".into(),
                "4".into(),
                "--deadline".into(),
                (600 + devices).to_string(),
            ],
        };
        common
            .iter()
            .map(|s| s.to_string())
            .chain(specific)
            .collect()
    }

    /// The figures this scenario reports: (label, how to read it from a report), the load
    /// average around the run first.
    fn figures(self) -> Vec<(&'static str, Figure)> {
        let load: [(&'static str, Figure); 2] = [
            ("load average, 1 min, before the run", |r| {
                r[LOAD_AVERAGE]["before"].as_f64()
            }),
            ("load average, 1 min, after the run", |r| {
                r[LOAD_AVERAGE]["after"].as_f64()
            }),
        ];
        let figures: Vec<(&'static str, Figure)> = match self {
            Scenario::Connect => vec![
                ("connect time (s)", |r| r["durations"]["connect_s"].as_f64()),
                ("control plane: KiB per device", |r| {
                    process(r, "control plane")?["memory_per_device_kib"].as_f64()
                }),
                ("agent + load generator: KiB per device", |r| {
                    process(r, "agent + load generator")?["memory_per_device_kib"].as_f64()
                }),
                ("control plane: peak RSS (MiB)", |r| {
                    mib(process(r, "control plane")?["peak_rss_kib"].as_f64()?)
                }),
                ("agent + load generator: peak RSS (MiB)", |r| {
                    mib(process(r, "agent + load generator")?["peak_rss_kib"].as_f64()?)
                }),
                ("restart: sessions ended after kill (s)", |r| {
                    r["durations"]["restart"]["disconnect_s"].as_f64()
                }),
                ("restart: new process listening (s)", |r| {
                    r["durations"]["restart"]["start_s"].as_f64()
                }),
                ("restart: every device reconnected (s)", |r| {
                    r["durations"]["restart"]["reconnect_s"].as_f64()
                }),
            ],
            Scenario::Throughput | Scenario::Realistic => vec![
                ("resets/s (final state)", |r| {
                    r["throughput"]["finished_per_s"].as_f64()
                }),
                ("resets/s (done)", |r| {
                    r["throughput"]["done_per_s"].as_f64()
                }),
                ("echo calls/s", |r| {
                    r["baselines"]["echo"]["calls_per_s"].as_f64()
                }),
                ("Argon2 hashes/s", |r| {
                    r["baselines"]["argon2"]["hashes_per_s"].as_f64()
                }),
                ("Argon2 bound (resets/s)", |r| {
                    r["baselines"]["argon2_bound_resets_per_s"].as_f64()
                }),
                ("ratio: resets/s ÷ echo", |r| {
                    r["baselines"]["ratio_to_echo"].as_f64()
                }),
                ("streaming echo messages/s (one way)", |r| {
                    r["baselines"]["stream_echo"]["messages_per_s"].as_f64()
                }),
                ("protocol ceiling, this load test (resets/s)", |r| {
                    r["baselines"]["ceiling"]["resets_per_s"].as_f64()
                }),
                ("protocol ceiling, protocol's units only", |r| {
                    r["baselines"]["ceiling"]["protocol_resets_per_s"].as_f64()
                }),
                ("ratio: resets/s ÷ ceiling", |r| {
                    r["baselines"]["ceiling"]["ratio"].as_f64()
                }),
                ("ratio: done/s ÷ Argon2 bound", |r| {
                    r["baselines"]["ratio_to_argon2_bound"].as_f64()
                }),
                ("control plane: CPU s per 1,000 devices (whole run)", |r| {
                    let cpu = process(r, "control plane")?["cpu_s"].as_f64()?;
                    Some(cpu * 1000.0 / r["throughput"]["finished"].as_f64()?)
                }),
                (
                    "agent + load generator: CPU s per 1,000 devices (whole run)",
                    |r| {
                        let cpu = process(r, "agent + load generator")?["cpu_s"].as_f64()?;
                        Some(cpu * 1000.0 / r["throughput"]["finished"].as_f64()?)
                    },
                ),
            ],
            Scenario::Latency => vec![
                ("requested → applied p50 (ms)", |r| {
                    phase(r, "requested_to_applied")?["p50"].as_f64()
                }),
                ("requested → applied p99 (ms)", |r| {
                    phase(r, "requested_to_applied")?["p99"].as_f64()
                }),
                ("issued/s (load generator)", |r| {
                    r["issue"]["issued_per_s"].as_f64()
                }),
                ("accepted/s (control plane)", |r| {
                    r["issue"]["accepted_per_s"].as_f64()
                }),
                ("resets/s (final state)", |r| {
                    r["throughput"]["finished_per_s"].as_f64()
                }),
            ],
        };
        load.into_iter().chain(figures).collect()
    }
}

/// Where the bench keeps, in each run's report, the machine's load around the run: the
/// machine is shared, and a figure means little without it.
const LOAD_AVERAGE: &str = "bench_load_average";

/// The 1-minute load average from /proc/loadavg (None where there is none).
fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

type Figure = fn(&Value) -> Option<f64>;

fn mib(kib: f64) -> Option<f64> {
    Some(kib / 1024.0)
}

fn process<'a>(report: &'a Value, role: &str) -> Option<&'a Value> {
    report["resources"]["processes"]
        .as_array()?
        .iter()
        .find(|p| p["role"] == role)
}

fn phase<'a>(report: &'a Value, name: &str) -> Option<&'a Value> {
    report["latency_ms"]
        .as_array()?
        .iter()
        .find(|p| p["phase"] == name)
}

struct Options {
    scenario: Scenario,
    repeat: usize,
    devices: usize,
}

fn parse(args: &[String]) -> Result<Option<Options>, String> {
    let mut scenario = None;
    let mut repeat = 3;
    let mut devices = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> Result<usize, String> {
            let text = args
                .next()
                .ok_or_else(|| format!("{name} needs a number"))?;
            text.parse()
                .map_err(|_| format!("{name} {text:?}: not a whole number"))
        };
        match arg.as_str() {
            // `cargo bench` passes --bench to every bench target.
            "--bench" => {}
            "--repeat" => repeat = value("--repeat")?,
            "--devices" => devices = Some(value("--devices")?),
            name => {
                let parsed = Scenario::parse(name).ok_or_else(|| {
                    format!(
                        "{name:?}: unknown scenario or option; use connect, throughput, latency \
                         or realistic"
                    )
                })?;
                scenario = Some(parsed);
            }
        }
    }
    let Some(scenario) = scenario else {
        return Ok(None);
    };
    if !(1..=MAX_REPEAT).contains(&repeat) {
        return Err(format!("--repeat {repeat}: give 1 to {MAX_REPEAT}"));
    }
    let devices = devices.unwrap_or(scenario.default_devices());
    if devices == 0 {
        return Err("--devices 0: give at least 1".into());
    }
    Ok(Some(Options {
        scenario,
        repeat,
        devices,
    }))
}

/// One run of the release binary; its report (with the load average before and after it), or
/// why there is none.
fn run_once(options: &[String], report_dir: &Path) -> Result<Value, String> {
    let before = load_average();
    let output = Command::new(env!("CARGO_BIN_EXE_droidfleet"))
        .arg("loadtest")
        .args(options)
        .arg("--report-dir")
        .arg(report_dir)
        .env_remove("DROIDFLEET_TOKEN_FILE")
        .stdin(Stdio::null())
        // The run's progress goes to the terminal; its table is read from report.json instead.
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run droidfleet: {e}"))?;
    let report = std::fs::read(report_dir.join("report.json"))
        .map_err(|e| format!("no report.json ({e})"))
        .and_then(|bytes| {
            serde_json::from_slice::<Value>(&bytes).map_err(|e| format!("bad report.json: {e}"))
        });
    if !output.status.success() {
        return Err(format!(
            "droidfleet loadtest failed ({}){}:\n{}",
            output.status,
            if report.is_ok() {
                ", partial report"
            } else {
                ""
            },
            String::from_utf8_lossy(&output.stdout)
        ));
    }
    let mut report = report?;
    let after = load_average();
    eprintln!(
        "load average (1 min): {} before the run, {} after",
        before.map_or("n/a".into(), |l| l.to_string()),
        after.map_or("n/a".into(), |l| l.to_string())
    );
    report[LOAD_AVERAGE] = serde_json::json!({ "before": before, "after": after });
    if report["unexpected"].as_u64().unwrap_or(0) > 0 {
        eprintln!(
            "note: {} device(s) did not end as injected; see {}",
            report["unexpected"],
            report_dir.join("report.json").display()
        );
    }
    Ok(report)
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

/// Two decimals, or four significant ones below 1 (the ratios are small).
fn shown(value: f64) -> String {
    if value.abs() < 1.0 && value != 0.0 {
        format!("{value:.4}")
    } else {
        format!("{value:.2}")
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse(&args) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(problem) => {
            eprintln!("{problem}\n\n{USAGE}");
            return ExitCode::FAILURE;
        }
    };
    let scratch = match tempfile::tempdir() {
        Ok(dir) => dir,
        Err(e) => {
            eprintln!("cannot create a temporary directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let loadtest_options: Vec<String> = ["--devices".to_string(), options.devices.to_string()]
        .into_iter()
        .chain(options.scenario.options(options.devices))
        .collect();
    println!(
        "scenario {:?}: droidfleet loadtest {} (×{})",
        options.scenario,
        loadtest_options.join(" "),
        options.repeat
    );
    let mut reports = Vec::new();
    let mut failures = 0;
    for run in 1..=options.repeat {
        eprintln!("--- run {run}/{} ---", options.repeat);
        match run_once(
            &loadtest_options,
            &scratch.path().join(format!("run-{run}")),
        ) {
            Ok(report) => reports.push(report),
            Err(problem) => {
                eprintln!("run {run}: {problem}");
                failures += 1;
            }
        }
    }

    println!(
        "\n{:?}, {} devices, {} of {} runs completed",
        options.scenario,
        options.devices,
        reports.len(),
        options.repeat
    );
    println!(
        "{:<46} {:>12} {:>12} {:>12}",
        "figure", "median", "min", "max"
    );
    for (label, read) in options.scenario.figures() {
        let mut values: Vec<f64> = reports.iter().filter_map(read).collect();
        values.sort_by(f64::total_cmp);
        match (values.first(), values.last()) {
            (Some(min), Some(max)) => println!(
                "{label:<46} {:>12} {:>12} {:>12}",
                shown(median(&values)),
                shown(*min),
                shown(*max)
            ),
            _ => println!("{label:<46} {:>12} {:>12} {:>12}", "n/a", "n/a", "n/a"),
        }
    }
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
