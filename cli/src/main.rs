//! `arcane`: the command line of the arcane-aip client.
//!
//! - `arcane demo [--prompt TEXT] [--model FILE.gguf] [--data-dir DIR] [--serve]`: the whole
//!   stack locally, then one verified request answered end to end.
//! - `arcane chat [PROMPT] --trust FILE`: every check, then the answer as it streams (an
//!   interactive session without a prompt).
//! - `arcane verify --trust FILE [--json]`: every pre-request check, no prompt sent.
//! - `arcane receipts --trust FILE [--json]`: the receipt log.
//!
//! Exit status: 0 success, 1 failure, 2 bad configuration, 3 a check refused (the check is
//! named), 4 a possible split view of the log (evidence saved).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

#[cfg(feature = "demo")]
use arcane_cli::demo::{Stack, StackOptions, demo_model};
use arcane_client::{ChatEvent, Client, ClientConfig, ClientError, Passed, Route, Trust};
use arcane_verifier::inner::{ChatCompletionRequest, ChatMessage};
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(
    name = "arcane",
    version,
    about = "Private LLM inference, verified before every request"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the whole stack locally and answer one verified request (development builds).
    #[cfg(feature = "demo")]
    Demo(DemoArgs),
    /// Send a prompt (or start an interactive session) after every check passes.
    Chat(ChatArgs),
    /// Run every pre-request check without sending a prompt.
    Verify(VerifyArgs),
    /// Show the receipt log.
    Receipts(ReceiptArgs),
    /// Serve an OpenAI-compatible endpoint (chat completions, models) on loopback: every request
    /// runs every check first.
    Proxy(ProxyArgs),
}

#[derive(Args)]
struct ProxyArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// Where to listen (loopback unless --allow-remote).
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Callers must send `Authorization: Bearer <key>` (also $ARCANE_PROXY_API_KEY).
    #[arg(long, env = "ARCANE_PROXY_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Listen beyond loopback (the proxy spends this user's tokens: set --api-key too).
    #[arg(long)]
    allow_remote: bool,
}

#[derive(Args)]
struct ClientArgs {
    /// The trust configuration (TOML).
    #[arg(long, env = "ARCANE_TRUST")]
    trust: PathBuf,
    /// The state folder (default: $ARCANE_STATE_DIR, $XDG_STATE_HOME/arcane or
    /// ~/.local/state/arcane).
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum RouteArg {
    Auto,
    Local,
    Cloud,
}

#[derive(Args)]
struct ChatArgs {
    #[command(flatten)]
    client: ClientArgs,
    /// The prompt; without it, an interactive session.
    prompt: Option<String>,
    /// The model name (default: whatever the verified nodes serve).
    #[arg(long, default_value = "")]
    model: String,
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    #[arg(long)]
    temperature: Option<f64>,
    /// Hide the verification lines.
    #[arg(long)]
    quiet: bool,
    /// Where to run: `cloud` (verified private cloud), `local` (on-device model), `auto`.
    #[arg(long, value_enum, default_value = "auto")]
    route: RouteArg,
    /// An on-device GGUF model for `--route local|auto`.
    #[arg(long)]
    local_model: Option<PathBuf>,
}

#[derive(Args)]
struct VerifyArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ReceiptArgs {
    #[command(flatten)]
    client: ClientArgs,
    #[arg(long)]
    json: bool,
}

#[cfg(feature = "demo")]
#[derive(Args)]
struct DemoArgs {
    #[arg(long, default_value = "Hello! Who are you?")]
    prompt: String,
    /// A GGUF model to serve (default: the demo model, fetched on first use).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Where the stack keeps its keys, databases and the client's state.
    #[arg(long, default_value = "arcane-demo")]
    data_dir: PathBuf,
    /// Keep the stack running after the answer, until interrupted.
    #[arg(long)]
    serve: bool,
    /// The built verification center the log serves at `/ui/` (`npm run build` in web/);
    /// `web/dist` when it exists.
    #[arg(long)]
    ui: Option<PathBuf>,
    #[arg(long, default_value_t = 64)]
    max_tokens: u32,
}

fn client(args: &ClientArgs) -> Result<Client, ClientError> {
    let trust = Trust::load(&args.trust)?;
    let mut config = ClientConfig::new(trust);
    if let Some(dir) = &args.state_dir {
        config.state_root = dir.clone();
    }
    Client::new(config)
}

fn print_passed(p: &Passed) {
    eprintln!("  ✓ {:<12} {}", p.check.name(), p.detail);
}

fn request(
    model: &str,
    prompt: &str,
    max_tokens: u32,
    temperature: Option<f64>,
) -> ChatCompletionRequest {
    ChatCompletionRequest {
        model: model.to_owned(),
        messages: vec![ChatMessage {
            role: "user".into(),
            content: prompt.to_owned(),
        }],
        max_tokens: Some(max_tokens),
        temperature,
        stream: Some(true),
        ..Default::default()
    }
}

/// Streams one answer to stdout; returns whether it completed.
async fn stream_answer(
    client: &mut Client,
    request: ChatCompletionRequest,
    route: Route,
) -> Result<(), ClientError> {
    let mut answer = client.chat(request, route).await?;
    let mut stdout = std::io::stdout();
    while let Some(event) = answer.next().await {
        match event {
            Ok(ChatEvent::Delta(text)) => {
                let _ = stdout.write_all(text.as_bytes());
                let _ = stdout.flush();
            }
            Ok(ChatEvent::Done(summary)) => {
                println!();
                let tokens = summary.usage.map_or(0, |u| u.completion_tokens);
                match &summary.receipt {
                    Some(r) => eprintln!(
                        "  answered by the node attested in document {}… (release entry {}), {tokens} tokens, receipt saved",
                        &r.document_sha256[..12],
                        r.release_index
                    ),
                    None => eprintln!("  answered on this device, {tokens} tokens"),
                }
                return Ok(());
            }
            Err(e) => {
                println!();
                return Err(e);
            }
        }
    }
    Err(ClientError::Interrupted {
        chunks: 0,
        reason: "the answer ended without a summary".into(),
    })
}

async fn chat(args: ChatArgs) -> Result<(), ClientError> {
    let mut client = client(&args.client)?;
    if !args.quiet {
        client.on_passed(print_passed);
    }
    if let Some(path) = &args.local_model {
        let model = arcane_engine::model::ModelFile::open(path)
            .map_err(|e| ClientError::Local(e.to_string()))?;
        client.set_local_model(arcane_client::local::LocalModel::load(&model, 2048).await?);
    }
    let route = match args.route {
        RouteArg::Auto => Route::Auto,
        RouteArg::Local => Route::Local,
        RouteArg::Cloud => Route::Cloud,
    };
    if let Some(prompt) = &args.prompt {
        return stream_answer(
            &mut client,
            request(&args.model, prompt, args.max_tokens, args.temperature),
            route,
        )
        .await;
    }
    // Interactive: one verified request per line (every check runs again each time).
    let stdin = std::io::stdin();
    loop {
        eprint!("> ");
        let mut line = String::new();
        if stdin
            .read_line(&mut line)
            .map_err(|e| ClientError::Config(e.to_string()))?
            == 0
        {
            return Ok(());
        }
        let prompt = line.trim();
        if prompt.is_empty() {
            continue;
        }
        if let Err(e) = stream_answer(
            &mut client,
            request(&args.model, prompt, args.max_tokens, args.temperature),
            route,
        )
        .await
        {
            eprintln!("  ✗ {e}");
            if e.check().is_some() {
                return Err(e);
            }
        }
    }
}

async fn proxy(args: ProxyArgs) -> Result<(), ClientError> {
    let client = client(&args.client)?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .map_err(|e| ClientError::Config(format!("{}: {e}", args.listen)))?;
    let running = arcane_cli::proxy::start(
        client,
        listener,
        arcane_cli::proxy::ProxyOptions {
            api_key: args.api_key,
            allow_remote: args.allow_remote,
        },
    )?;
    println!("arcane proxy listening on {}/v1", running.url());
    interrupted().await;
    Ok(())
}

async fn verify(args: VerifyArgs) -> Result<(), ClientError> {
    let mut client = client(&args.client)?;
    if !args.json {
        client.on_passed(print_passed);
    }
    let result = client.preflight(None).await;
    if args.json {
        let value = match &result {
            Ok(p) => serde_json::json!({ "ok": true, "checks": p.report }),
            Err(e) => serde_json::json!({
                "ok": false,
                "failed_check": e.check().map(|c| c.name()),
                "error": e.to_string(),
            }),
        };
        println!("{value}");
    } else if result.is_ok() {
        println!("every check passed");
    }
    result.map(|_| ())
}

fn receipts(args: ReceiptArgs) -> Result<(), ClientError> {
    let client = client(&args.client)?;
    let all = arcane_client::receipts::read_all(client.state())?;
    for r in &all {
        if args.json {
            println!("{}", serde_json::to_string(r).expect("receipt JSON"));
        } else {
            println!(
                "{} {:<11} model {} | checkpoint {} size {} root {}… | release entry {} ({}…) | document {}… | {} token(s) | {} checks passed",
                r.at_ms,
                r.outcome,
                r.model,
                r.log_origin,
                r.checkpoint_size,
                &r.checkpoint_root[..16],
                r.release_index,
                &r.release_leaf_hash[..16],
                &r.document_sha256[..16],
                r.completion_tokens,
                r.checks.len()
            );
        }
    }
    if all.is_empty() && !args.json {
        eprintln!("no receipts yet");
    }
    Ok(())
}

#[cfg(feature = "demo")]
async fn demo(args: DemoArgs) -> Result<(), ClientError> {
    let progress = |m: &str| eprintln!("[demo] {m}");
    let data_dir = std::path::absolute(&args.data_dir)
        .map_err(|e| ClientError::Config(format!("{}: {e}", args.data_dir.display())))?;
    let model = demo_model(args.model.as_deref(), &data_dir, &progress)?;
    let mut options = StackOptions::new(data_dir.clone(), model);
    options.ui = args
        .ui
        .clone()
        .or_else(|| Some(PathBuf::from("web/dist")).filter(|d| d.join("index.html").is_file()));
    let stack = Stack::start(options, &progress).await?;
    eprintln!("[demo] client: verifying everything, then sending the prompt through the relay");
    let trust = Trust::load(&stack.trust_file)?;
    let mut config = ClientConfig::new(trust);
    config.state_root = stack.client_state.clone();
    let mut client = Client::new(config)?;
    client.on_passed(print_passed);
    eprintln!("> {}", args.prompt);
    let answered = stream_answer(
        &mut client,
        request("", &args.prompt, args.max_tokens, None),
        Route::Cloud,
    )
    .await;
    if let Err(e) = answered {
        stack.shutdown().await;
        return Err(e);
    }
    if args.serve {
        println!("log: {}", stack.log_url);
        println!("gateway: {}", stack.gateway.url());
        println!("relay: {}", stack.relay.url());
        println!("trust: {}", stack.trust_file.display());
        match stack.verification_center_url() {
            Some(url) => println!("verification center: {url}"),
            None => eprintln!(
                "[demo] no verification center: build it with `npm install && npm run build` in web/"
            ),
        }
        eprintln!(
            "[demo] serving until interrupted; try: arcane chat --trust {} --state-dir {} \"your prompt\"",
            stack.trust_file.display(),
            stack.client_state.display()
        );
        interrupted().await;
        eprintln!("[demo] shutting down");
    }
    stack.shutdown().await;
    Ok(())
}

async fn interrupted() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn exit_code(e: &ClientError) -> ExitCode {
    match e {
        ClientError::SplitView { .. } => ExitCode::from(4),
        ClientError::Refused { .. } => ExitCode::from(3),
        ClientError::Config(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    }
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,mistralrs_core=error".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let cli = Cli::parse();
    #[cfg(feature = "demo")]
    let demo_interrupt = matches!(cli.command, Command::Demo(_));
    #[cfg(not(feature = "demo"))]
    let demo_interrupt = false;
    let result = runtime.block_on(async move {
        let work = async move {
            match cli.command {
                #[cfg(feature = "demo")]
                Command::Demo(args) => demo(args).await,
                Command::Chat(args) => chat(args).await,
                Command::Verify(args) => verify(args).await,
                Command::Receipts(args) => receipts(args),
                Command::Proxy(args) => proxy(args).await,
            }
        };
        if demo_interrupt {
            // Ctrl-C while models load or the answer streams: stop cleanly.
            tokio::select! {
                r = work => r,
                _ = interrupted() => {
                    eprintln!("[demo] interrupted");
                    Ok(())
                }
            }
        } else {
            work.await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            match e.check() {
                Some(check) => eprintln!("  ✗ {:<12} {e}", check.name()),
                None => eprintln!("arcane: {e}"),
            }
            exit_code(&e)
        }
    }
}
