use clap::{Args, Parser, Subcommand};
use nym_client::{config, runner, InitOptions};
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "nym-client", version, about = "Nym mixnet native client: a websocket API for your applications")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Initialise a new client instance: keys, config, and registration with a gateway.
    Init(InitArgs),
    /// Run a client instance: connect to its gateway, send cover traffic and serve the websocket API.
    Run(RunArgs),
}

#[derive(Args)]
struct InitArgs {
    /// Local name of the client (never sent over the network).
    #[arg(long)]
    id: String,
    /// Directory server URL (http://host:port).
    #[arg(long)]
    directory: Option<String>,
    /// base58 identity key of the gateway to register with (default: a random one from the directory).
    #[arg(long)]
    gateway: Option<String>,
    /// Port of the local websocket API (default 1977).
    #[arg(long)]
    port: Option<u16>,
    /// base58 ed25519 key of the directory, as its operator publishes it: only
    /// topologies signed by it are believed. Default: the key the directory
    /// presents on first contact (trust on first use), printed to compare.
    #[arg(long)]
    directory_key: Option<String>,
    /// The network's directory authorities file: one `<base58 ed25519 key> <http://host:port>`
    /// per line (`#` comments), the same file as the authorities' and nodes'. A topology is
    /// believed when at least --threshold of these keys signed it; kept in config.toml.
    /// Replaces --directory and --directory-key.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["directory", "directory_key"])]
    authorities: Option<std::path::PathBuf>,
    /// With --authorities: valid signatures a topology needs (default: a majority, N/2 + 1).
    #[arg(long, value_name = "K", requires = "authorities")]
    threshold: Option<usize>,
}

#[derive(Args)]
struct RunArgs {
    /// Local name of the client to run.
    #[arg(long)]
    id: String,
    /// Port of the local websocket API, overriding the config.
    #[arg(long)]
    port: Option<u16>,
    /// Directory server URL, overriding the config.
    #[arg(long, conflicts_with = "localnet")]
    directory: Option<String>,
    /// Start a local mixnet (directory, 3x2 mixnodes, 2 gateways on 127.0.0.1) inside this
    /// process, keeping node keys in $HOME/.nym/localnet; initialises the client against it
    /// when it does not exist yet.
    #[arg(long)]
    localnet: bool,
    /// Also let web pages of this origin (scheme://host[:port]; any port when none is given)
    /// use the websocket API; repeatable. By default only pages served from loopback may;
    /// programs that send no Origin header always can.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allow_origin: Vec<String>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        println!("{}", nym_client::banner());
        println!("usage: --help to see available options.");
        return ExitCode::SUCCESS;
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match command {
            Command::Init(args) => init(args).await,
            Command::Run(args) => run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn init(args: InitArgs) -> anyhow::Result<()> {
    println!("{}", nym_client::banner());
    let authorities = match &args.authorities {
        Some(path) => Some(nym_client::read_authorities(path, args.threshold)?),
        None => None,
    };
    let opts = InitOptions {
        id: args.id,
        directory: args.directory,
        gateway: args.gateway,
        port: args.port,
        directory_key: args.directory_key,
        authorities,
    };
    let done = nym_client::init(&opts).await?;
    println!("Saved configuration to {}", done.config_path.display());
    if let Some((n, threshold)) = done.authorities {
        println!("Authorities pinned: {n}; a topology needs {threshold} of their signatures");
    } else if done.directory_key_learned {
        println!(
            "Directory key (trusted on first use; compare it with the one your directory's operator publishes): {}",
            done.directory_key
        );
    } else {
        println!("Directory key (pinned with --directory-key): {}", done.directory_key);
    }
    println!("Client '{}' registered with its gateway.", opts.id);
    println!("The address of this client is: {}", done.address);
    Ok(())
}

/// Ctrl-C (or SIGTERM).
async fn ctrl_c() {
    nym_mixnet::shutdown_signal().await;
    tracing::info!("received Ctrl-C; stopping");
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    println!("{}", nym_client::banner());
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tokio::spawn(async move {
        if let Ok(ready) = ready_rx.await {
            let ready: runner::Ready = ready;
            println!("The address of this client is: {}", ready.address);
            println!("Websocket API listening on ws://{}", ready.listen_addr);
        }
    });
    if args.localnet {
        let net = nym_client::localnet::start().await?;
        let directory = net.directory_url();
        println!("Local mixnet running; directory at {directory}");
        if !config::config_path(&args.id)?.exists() {
            let opts = InitOptions {
                id: args.id.clone(),
                directory: Some(directory.clone()),
                gateway: None,
                port: args.port,
                directory_key: Some(nym_client_core::encode_key(&net.directory_key())),
                authorities: None,
            };
            let done = nym_client::init(&opts).await?;
            println!("Initialised client '{}' against the local mixnet ({})", args.id, done.config_path.display());
        }
        let config = nym_client::load_for_run(&args.id, args.port, &args.allow_origin)?;
        let result = runner::run(config, Some(directory), Some(ready_tx), ctrl_c()).await;
        net.shutdown().await;
        result
    } else {
        let config = nym_client::load_for_run(&args.id, args.port, &args.allow_origin)?;
        runner::run(config, args.directory, Some(ready_tx), ctrl_c()).await
    }
}
