//! The command line: parse, load the configuration, run the command, map the outcome to an
//! exit code (the table is `exit::EXIT_CODES_HELP`, printed by `--help`).

use crate::config::{load, ConfigSource, LoadedConfig};
use crate::exit::ExitCode;
use crate::selection::{Selection, Shard};
use crate::{logging, RunOptions};
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "iaso-probe",
    version,
    about = "Continuously tests the IASO backup API and ships every result to Elasticsearch",
    after_help = crate::exit::EXIT_CODES_HELP
)]
pub struct Cli {
    /// Configuration file (repeatable; later files override earlier ones). Without any, the
    /// embedded config/default.toml (three simulated environments) is used.
    #[arg(long = "config", short = 'c', global = true, value_name = "FILE")]
    pub config: Vec<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Probe the environments: service mode, or one pass with --once.
    Run(RunArgs),
    /// Load and validate the configuration, print the problems, and exit (0 valid, 2 invalid).
    CheckConfig(SelectArgs),
    /// Serve the simulated IASO portal.
    Simulate(SimulateArgs),
    /// Install the ILM policy and index templates in Elasticsearch and import the Kibana
    /// dashboards (idempotent).
    Setup(SetupArgs),
    /// Ship the journal's pending results to Elasticsearch, then exit.
    Ship(ShipArgs),
}

#[derive(Debug, Args)]
pub struct ShipArgs {
    /// Wait at most this long for Elasticsearch (unreachable, failing, refusing) before giving
    /// up: seconds, or with a unit (`90s`, `5m`, `1h`). Default:
    /// `elasticsearch.once_ship_deadline_secs` (60 s unless configured).
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub deadline: Option<std::time::Duration>,
    /// Then send the documents of the dead-letter file again (same ids: none is stored
    /// twice); those still refused stay in the file with the new reason.
    #[arg(long)]
    pub dead_letter: bool,
}

/// `90`, `90s`, `5m`, `1h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let s = s.trim();
    let (num, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, "s"),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}`: expected seconds or a number with s, m or h"))?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use s, m or h)")),
    };
    Ok(std::time::Duration::from_secs(secs))
}

#[derive(Debug, Args)]
pub struct SetupArgs {
    /// Print the exact requests that would be sent, send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Wait this long for Kibana to become available before importing.
    #[arg(long, default_value_t = 300)]
    pub kibana_wait_secs: u64,
    /// Import the dashboards even when Kibana has the same version (replaces edits made in
    /// Kibana to our objects).
    #[arg(long)]
    pub force_dashboards: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// One pass (checks, authentication, backups, restores, every job tracked to its end),
    /// a summary, and an exit code.
    #[arg(long)]
    pub once: bool,
    /// No live progress line on a terminal (a `progress` log line every 10 s instead, as
    /// when stderr is not a terminal).
    #[arg(long)]
    pub no_progress: bool,
    /// Also write the summary as JSON to FILE (per environment and check: counts, p50/p95/p99
    /// latency, top failure reasons; jobs by outcome; unshipped count; thresholds and their
    /// verdicts). Schema: docs/summary.schema.json.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    #[command(flatten)]
    pub select: SelectArgs,
}

#[derive(Debug, Args, Default)]
pub struct SelectArgs {
    /// Only this environment (repeatable).
    #[arg(long = "env", value_name = "NAME")]
    pub envs: Vec<String>,
    /// Back up only this host (repeatable).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// Back up the hosts of this file (`hostname [LEVEL]` per line).
    #[arg(long = "hosts", value_name = "FILE")]
    pub hosts_file: Option<PathBuf>,
    /// Take only shard I of N: its hosts and restores (stable hash of the host name); the
    /// checks run on the checks owner only.
    #[arg(
        long,
        value_name = "I/N",
        env = "IASO_PROBE_SHARD",
        conflicts_with = "shard_from_hostname"
    )]
    pub shard: Option<Shard>,
    /// Take the shard from this machine's hostname, as a StatefulSet names its pods
    /// (`iaso-probe-3` → shard 3/N).
    #[arg(long, value_name = "N", env = "IASO_PROBE_SHARD_FROM_HOSTNAME")]
    pub shard_from_hostname: Option<u32>,
    /// The shard that runs the checks of every environment.
    #[arg(
        long,
        value_name = "I",
        default_value_t = 0,
        env = "IASO_PROBE_CHECKS_OWNER"
    )]
    pub checks_owner: u32,
}

impl SelectArgs {
    fn selection(&self) -> Result<Selection, String> {
        let shard = match (self.shard, self.shard_from_hostname) {
            (Some(s), _) => Some(s),
            (None, Some(n)) => Some(Shard::from_hostname(
                &crate::actors::supervisor::observer_hostname(),
                n,
            )?),
            (None, None) => None,
        };
        if let Some(s) = shard {
            if self.checks_owner >= s.count {
                return Err(format!(
                    "--checks-owner {}: no such shard (shards are 0 to {})",
                    self.checks_owner,
                    s.count - 1
                ));
            }
        }
        Ok(Selection {
            envs: self.envs.clone(),
            hosts: self.hosts.clone(),
            hosts_file: self.hosts_file.clone(),
            shard,
            checks_owner: self.checks_owner,
        })
    }
}

#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: String,
    /// Simulator settings (TOML of the `[simulator]` keys); defaults otherwise.
    #[arg(long = "simulator-config", value_name = "FILE")]
    pub simulator_config: Option<PathBuf>,
    /// Seed of the simulator's randomness.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Shape of the API: `reference`, `alt` or `commvault` (over the settings file's).
    #[arg(long)]
    pub dialect: Option<crate::simulator::Dialect>,
}

fn source(cli: &Cli) -> ConfigSource {
    if cli.config.is_empty() {
        ConfigSource::Embedded
    } else {
        ConfigSource::Files(cli.config.clone())
    }
}

fn load_or_report(cli: &Cli) -> Result<LoadedConfig, ExitCode> {
    reported(load(&source(cli)))
}

/// An error printed on stderr, as exit code 2.
fn reported<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, ExitCode> {
    r.map_err(|e| {
        eprintln!("iaso-probe: {e}");
        ExitCode::Setup
    })
}

/// The exit code, whichever way a command ended.
fn either(r: Result<ExitCode, ExitCode>) -> ExitCode {
    r.unwrap_or_else(|code| code)
}

/// The Elasticsearch client `command` (setup, ship) needs; built in this one place.
fn es_client_for(
    cfg: &crate::config::Config,
    command: &str,
) -> Result<elasticsearch::Elasticsearch, ExitCode> {
    match reported(crate::sink::es_client::build(&cfg.elasticsearch))? {
        Some((c, _)) => Ok(c),
        None => {
            eprintln!("iaso-probe: {command} needs Elasticsearch: set elasticsearch.urls, elasticsearch.cloud_id or ELASTICSEARCH_URL");
            Err(ExitCode::Setup)
        }
    }
}

/// The templates and ILM policy of `[elasticsearch]`.
fn setup_plan(cfg: &crate::config::Config) -> Vec<crate::setup::SetupRequest> {
    crate::setup::elasticsearch_plan_with(&crate::setup::PlanOptions::from_config(
        &cfg.elasticsearch,
    ))
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let code = match &cli.command {
        Command::CheckConfig(sel) => check_config(&cli, sel),
        Command::Run(args) => run(&cli, args),
        Command::Simulate(args) => simulate(args),
        Command::Setup(args) => setup(&cli, args),
        Command::Ship(args) => ship(&cli, args),
    };
    code.code()
}

fn check_config(cli: &Cli, sel: &SelectArgs) -> ExitCode {
    either(try_check_config(cli, sel))
}

fn try_check_config(cli: &Cli, sel: &SelectArgs) -> Result<ExitCode, ExitCode> {
    let loaded = load_or_report(cli)?;
    let selection = reported(sel.selection())?;
    if let Some(s) = selection.shard {
        let checks = if s.runs_checks(selection.checks_owner) {
            "runs the checks"
        } else {
            "no checks (shard {owner} runs them)"
        };
        println!(
            "shard {s}: its hosts and restores; {}",
            checks.replace("{owner}", &selection.checks_owner.to_string())
        );
    }
    let plan = reported(crate::selection::select(&loaded.config, &selection))?;
    for (name, env, hosts) in plan {
        let target = match (&env.simulator, &env.base_url) {
            (Some(_), _) => "in-process simulator".to_string(),
            (None, Some(u)) => u.clone(),
            _ => String::new(),
        };
        println!(
            "environment {name}: {target}, {} hosts, {} restores, {}/s (burst {})",
            hosts.len(),
            env.restores.len(),
            env.rate_limit_per_sec,
            env.rate_limit_burst
        );
    }
    println!("configuration is valid");
    Ok(ExitCode::Ok)
}

/// Handles the stop signals for the rest of the process (`signals::watch`): the returned
/// future resolves at the first; a real second one exits at once.
fn stop_signals() -> (
    impl std::future::Future<Output = ()> + 'static,
    crate::signals::FirstSignal,
) {
    crate::signals::watch(|sig| {
        crate::progress::clear();
        eprintln!(
            "iaso-probe: second signal ({}, more than 1 s after the first), exiting without waiting for the drain",
            sig.name()
        );
        std::process::exit(ExitCode::Signal(sig).code());
    })
}

/// Resolves on SIGINT or SIGTERM (registered at once, so that an early signal is not lost).
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    async move {
        #[cfg(unix)]
        {
            let term_fut = async {
                match term.as_mut() {
                    Some(t) => {
                        t.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
                _ = term_fut => tracing::info!("SIGTERM received"),
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

fn run(cli: &Cli, args: &RunArgs) -> ExitCode {
    either(try_run(cli, args))
}

fn try_run(cli: &Cli, args: &RunArgs) -> Result<ExitCode, ExitCode> {
    let loaded = load_or_report(cli)?;
    let selection = reported(args.select.selection())?;
    let cfg = loaded.config;
    let _guards = reported(logging::init(&cfg.log))?;
    let opts = RunOptions {
        once: args.once,
        selection,
        seed: None,
        shutdown_deadline: None,
        live_progress: !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        ..Default::default()
    };
    let once = args.once;
    let journal_dir = cfg.journal.dir.clone();
    let system = actix::System::new();
    let (result, first) = system.block_on(async move {
        // A second signal more than 1 s after the first means "now": skip the drain (the
        // journal is flushed every flush_interval_ms, so at most that much is lost) rather
        // than make the operator reach for kill -9.
        let (signal, first) = stop_signals();
        (crate::run(cfg, opts, signal).await, first)
    });
    let report = result.map_err(|e| {
        tracing::error!(error = %e, "run failed");
        eprintln!("iaso-probe: {e}");
        ExitCode::Setup
    })?;
    let code = run_exit_code(&report, once, first.get().copied(), &journal_dir);
    print_run_report(&report, once);
    if let Some(path) = &args.summary_json {
        write_summary_json(path, &report.summary_json(code))?;
    }
    Ok(code)
}

/// The end-of-run lines on stdout: the summary table, the journal, shipping, thresholds.
fn print_run_report(report: &crate::RunReport, once: bool) {
    println!("{}", report.tally.render());
    println!(
        "run {}: journal has {} new results",
        report.run_id, report.sink.written
    );
    match &report.shipping {
        Some(s) => println!(
            "elasticsearch: {} stored, {} already there, {} dead-lettered, {} still unshipped{}",
            s.counters.stored,
            s.counters.duplicates,
            s.counters.dead_lettered,
            s.unshipped,
            if s.unshipped > 0 {
                " (sent by the next run or `iaso-probe ship`)"
            } else {
                ""
            }
        ),
        None => println!("elasticsearch: not configured (results in the journal only)"),
    }
    if report.thresholds_set && once {
        let failed = report.thresholds.iter().filter(|v| !v.passed).count();
        println!(
            "thresholds: {} passed, {failed} failed",
            report.thresholds.len() - failed
        );
        for v in report.thresholds.iter().filter(|v| !v.passed) {
            println!("  {}", v.describe());
        }
    }
}

/// `--summary-json FILE`.
fn write_summary_json(path: &std::path::Path, doc: &serde_json::Value) -> Result<(), ExitCode> {
    let text = serde_json::to_string_pretty(doc).expect("a JSON value serializes");
    std::fs::write(path, text + "\n").map_err(|e| {
        eprintln!(
            "iaso-probe: cannot write the summary to {}: {e}",
            path.display()
        );
        ExitCode::Setup
    })
}

/// The exit code of a finished run (and the messages that explain it).
fn run_exit_code(
    report: &crate::RunReport,
    once: bool,
    signal: Option<crate::signals::StopSignal>,
    journal_dir: &std::path::Path,
) -> ExitCode {
    let shipping_cut = report.shipping.as_ref().is_some_and(|s| s.interrupted);
    let lost = report.sink.lost;
    if lost > 0 {
        eprintln!(
            "iaso-probe: {lost} results could not be written to the journal {} and are lost ({})",
            journal_dir.display(),
            report.sink.last_error.as_deref().unwrap_or("write error")
        );
        tracing::error!(lost, dir = %journal_dir.display(), "results lost: the journal could not be written");
        return ExitCode::Setup;
    }
    match (once, signal) {
        (_, Some(s @ crate::signals::StopSignal::Hangup)) => {
            eprintln!(
                "iaso-probe: stopped by SIGHUP (graceful stop; the configuration is not reloaded)"
            );
            ExitCode::Signal(s)
        }
        (true, Some(s)) if report.interrupted => {
            eprintln!(
                "iaso-probe: interrupted by {} before the pass completed",
                s.name()
            );
            ExitCode::Signal(s)
        }
        (true, Some(s)) if shipping_cut => {
            eprintln!("iaso-probe: {} ended the wait for shipping; the rest stays in the journal (the next run or `iaso-probe ship` sends it)", s.name());
            ExitCode::Signal(s)
        }
        (true, _) => report.exit_code(),
        (false, _) => ExitCode::Ok,
    }
}

fn simulate(args: &SimulateArgs) -> ExitCode {
    let _guards = logging::init_stderr("info");
    let mut cfg = match &args.simulator_config {
        None => crate::simulator::SimulatorConfig::default(),
        Some(p) => match std::fs::read_to_string(p)
            .map_err(|e| e.to_string())
            .and_then(|t| {
                toml::from_str::<crate::simulator::SimulatorConfig>(&t).map_err(|e| e.to_string())
            }) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("iaso-probe: simulator config {}: {e}", p.display());
                return ExitCode::Setup;
            }
        },
    };
    if let Some(seed) = args.seed {
        cfg.seed = seed;
    }
    if let Some(dialect) = args.dialect {
        cfg.dialect = dialect;
    }
    if let Err(m) = cfg.validate() {
        eprintln!("iaso-probe: simulator config: {m}");
        return ExitCode::Setup;
    }
    let addr = match format!("{}:{}", args.bind, args.port).parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("iaso-probe: --bind/--port: {e}");
            return ExitCode::Setup;
        }
    };
    let handle = match crate::simulator::spawn(cfg, addr) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("iaso-probe: simulator on {addr}: {e}");
            return ExitCode::Setup;
        }
    };
    tracing::info!(url = %handle.base_url(), "simulator listening");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async { shutdown_signal().await });
    drop(handle);
    ExitCode::Ok
}

fn kibana_target(
    cfg: &crate::config::Config,
) -> Result<Option<crate::setup::KibanaTarget>, String> {
    let Some(url) = &cfg.kibana.url else {
        return Ok(None);
    };
    let url = crate::config::check_url(url).map_err(|m| format!("kibana.url: {m}"))?;
    let es = &cfg.elasticsearch;
    let username = cfg.kibana.username.clone().or_else(|| es.username.clone());
    // Kibana's own password variable must be there; the Elasticsearch password and API key
    // are borrowed when they can be had (the Elasticsearch client reports them otherwise).
    let own = crate::config::secret(
        "kibana",
        None,
        cfg.kibana
            .password_env
            .as_deref()
            .map(|v| ("password_env", v)),
        None,
    )?;
    let password = match own {
        Some(p) => Some(p),
        None => crate::config::es_password(es).ok().flatten(),
    };
    let api_key = crate::config::secret(
        "elasticsearch",
        None,
        es.api_key_env.as_deref().map(|v| ("api_key_env", v)),
        None,
    )
    .ok()
    .flatten();
    Ok(Some(crate::setup::KibanaTarget {
        url,
        username,
        password: password.map(|p| p.expose().to_owned()),
        api_key: api_key.map(|k| k.expose().to_owned()),
        space: cfg.kibana.space.clone(),
    }))
}

fn setup(cli: &Cli, args: &SetupArgs) -> ExitCode {
    either(try_setup(cli, args))
}

fn try_setup(cli: &Cli, args: &SetupArgs) -> Result<ExitCode, ExitCode> {
    let cfg = load_or_report(cli)?.config;
    let _guards = logging::init_stderr(&cfg.log.level);
    let plan = setup_plan(&cfg);
    let kibana = reported(kibana_target(&cfg))?;
    let rules = if cfg.kibana.alerts.enabled {
        crate::setup::alert_rules(&cfg.kibana.alerts)
    } else {
        Vec::new()
    };
    if args.dry_run {
        for line in crate::setup::dry_run_lines(&plan, kibana.as_ref()) {
            println!("{line}");
        }
        if let Some(target) = &kibana {
            for line in crate::setup::rule_lines(target, &rules) {
                println!("{line}");
            }
        }
        return Ok(ExitCode::Ok);
    }
    let client = es_client_for(&cfg, "setup")?;
    let wait = std::time::Duration::from_secs(args.kibana_wait_secs);
    let force = args.force_dashboards;
    let kibana_cfg = cfg.kibana.clone();
    let system = actix::System::new();
    let result: Result<(), String> = system.block_on(async move {
        let installed = crate::setup::install_elasticsearch_reporting(&client, &plan)
            .await
            .map_err(|e| e.to_string())?;
        println!("elasticsearch: {}", installed.describe());
        match kibana {
            Some(target) => setup_kibana(&kibana_cfg, &target, &rules, wait, force).await,
            None => {
                println!("kibana: no kibana.url configured, dashboards not imported");
                Ok(())
            }
        }
    });
    result.map(|()| ExitCode::Ok).map_err(|m| {
        eprintln!("iaso-probe: setup failed: {m}");
        ExitCode::Setup
    })
}

/// Waits for Kibana, syncs the dashboards, then creates or updates the alerting rules.
async fn setup_kibana(
    kibana_cfg: &crate::config::KibanaConfig,
    target: &crate::setup::KibanaTarget,
    rules: &[crate::setup::AlertRule],
    wait: std::time::Duration,
    force: bool,
) -> Result<(), String> {
    let http = crate::setup::kibana_http_client(kibana_cfg)?;
    crate::setup::wait_kibana_available(&http, target, wait, std::time::Duration::from_secs(5))
        .await
        .map_err(|e| e.to_string())?;
    let files = crate::setup::kibana_files();
    let synced = crate::setup::sync_kibana(&http, target, &files, force)
        .await
        .map_err(|e| e.to_string())?;
    for (file, sync) in &synced {
        println!("kibana: {}", sync.describe(file));
    }
    if rules.is_empty() {
        println!("kibana: alerting rules disabled (kibana.alerts.enabled = false)");
    }
    for (id, sync) in crate::setup::install_rules(&http, target, rules)
        .await
        .map_err(|e| e.to_string())?
    {
        let what = match sync {
            crate::setup::RuleSync::Created => "created",
            crate::setup::RuleSync::Updated => "updated",
        };
        println!("kibana: alerting rule {id} {what} (no action: add a connector in Kibana, README \"Alerts\")");
    }
    Ok(())
}

/// How `ship` ended.
enum ShipEnd {
    Done(Option<crate::sink::shipper::ResendReport>),
    Deadline,
    Signal,
    Failed(std::io::Error),
}

/// Ships until the journal is caught up, waiting (capped backoff) while Elasticsearch is
/// unreachable, refuses us, or the disk refuses a dead letter; the caller bounds it.
async fn ship_until_caught_up(shipper: &mut crate::sink::shipper::Shipper) {
    let mut backoff = crate::sink::disk::RetryBackoff::new(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(10),
    );
    loop {
        if let Err(e) = shipper.ship_available().await {
            tracing::warn!(error = %e, "shipping stopped on a disk error; retrying");
            shipper.counters().lock().unwrap().last_error = Some(e.to_string());
        }
        if shipper.caught_up() {
            shipper.save_checkpoint(true);
            return;
        }
        let wait = backoff.failed(tokio::time::Instant::now());
        tokio::time::sleep(wait).await;
    }
}

fn ship(cli: &Cli, args: &ShipArgs) -> ExitCode {
    either(try_ship(cli, args))
}

fn try_ship(cli: &Cli, args: &ShipArgs) -> Result<ExitCode, ExitCode> {
    let cfg = load_or_report(cli)?.config;
    let _guards = logging::init_stderr(&cfg.log.level);
    // The journal directory is ours until we exit: a running prober (or another ship) there
    // would move the checkpoint under us.
    let _lock = reported(crate::sink::lock::JournalLock::acquire(&cfg.journal.dir))?;
    let client = es_client_for(&cfg, "ship")?;
    let mut shipper =
        crate::sink::shipper::Shipper::new(client, cfg.elasticsearch.clone(), cfg.journal.clone())
            .map_err(|e| {
                eprintln!("iaso-probe: journal {}: {e}", cfg.journal.dir.display());
                ExitCode::Setup
            })?;
    if cfg.elasticsearch.setup_on_start {
        shipper.require_setup(setup_plan(&cfg));
    }
    let counters = shipper.counters();
    let dead_letter_path = shipper.dead_letter_path().to_owned();
    let deadline = args.deadline.unwrap_or(std::time::Duration::from_secs(
        cfg.elasticsearch.once_ship_deadline_secs,
    ));
    let resend = args.dead_letter;
    let system = actix::System::new();
    let (end, first) = system.block_on(async move {
        let (signal, first) = stop_signals();
        let work = async {
            ship_until_caught_up(&mut shipper).await;
            if resend {
                shipper.resend_dead_letters().await.map(Some)
            } else {
                Ok(None)
            }
        };
        let end = tokio::select! {
            r = tokio::time::timeout(deadline, work) => match r {
                Ok(Ok(report)) => ShipEnd::Done(report),
                Ok(Err(e)) => ShipEnd::Failed(e),
                Err(_) => ShipEnd::Deadline,
            },
            _ = signal => ShipEnd::Signal,
        };
        (end, first)
    });
    let c = counters.lock().unwrap().clone();
    let unshipped =
        crate::sink::shipper::unshipped_from(&cfg.journal.dir, c.position).unwrap_or(u64::MAX);
    println!(
        "shipped: {} stored, {} already there, {} dead-lettered; {} results still unshipped",
        c.stored, c.duplicates, c.dead_lettered, unshipped
    );
    let sig = first.get().copied();
    Ok(ship_exit_code(
        end,
        &c,
        unshipped,
        &dead_letter_path,
        sig,
        deadline,
    ))
}

/// The exit code of `ship`, and the lines that explain it.
fn ship_exit_code(
    end: ShipEnd,
    c: &crate::sink::shipper::ShipperCounters,
    unshipped: u64,
    dead_letter_path: &std::path::Path,
    signal: Option<crate::signals::StopSignal>,
    deadline: std::time::Duration,
) -> ExitCode {
    match end {
        ShipEnd::Done(report) => {
            if let Some(r) = report {
                println!(
                    "dead letters: {} sent again: {} stored, {} already there, {} still refused (kept in {}){}",
                    r.sent,
                    r.stored,
                    r.duplicates,
                    r.refused,
                    dead_letter_path.display(),
                    if r.kept > 0 {
                        format!("; {} lines that are no document kept as they were", r.kept)
                    } else {
                        String::new()
                    }
                );
            }
            ExitCode::Ok
        }
        ShipEnd::Failed(e) => {
            eprintln!(
                "iaso-probe: dead-letter file {}: {e}",
                dead_letter_path.display()
            );
            ExitCode::Setup
        }
        ShipEnd::Signal => {
            let sig = signal.unwrap_or(crate::signals::StopSignal::Interrupt);
            eprintln!(
                "iaso-probe: stopped by {} with {unshipped} results unshipped; run ship again later",
                sig.name()
            );
            ExitCode::Signal(sig)
        }
        ShipEnd::Deadline => {
            let why = match (&c.paused, &c.last_error) {
                (Some(p), _) => format!("Elasticsearch refuses our requests ({p}): check elasticsearch credentials, privileges and URL"),
                (None, Some(e)) => format!("Elasticsearch unavailable or failing, last error: {e}"),
                (None, None) => "shipping was still going (large journal or slow cluster)".to_owned(),
            };
            eprintln!(
                "iaso-probe: stopped at the deadline ({} s) with {unshipped} results unshipped: {why}; run ship again later (--deadline to wait longer)",
                deadline.as_secs()
            );
            ExitCode::ProbeFailed
        }
    }
}
