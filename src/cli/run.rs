//! `airlock run` (Linux only): run a command in a network namespace whose only way out is Airlock.

use std::path::PathBuf;

use anyhow::{bail, Result};

use airlock::config::Config;

#[derive(clap::Args)]
#[command(
    after_help = "The agent token is read from $AIRLOCK_AGENT_TOKEN or --token-file, never \
from the command line. See docs/run.md."
)]
pub(super) struct RunArgs {
    /// Agent name for the proxy credentials (token: $AIRLOCK_AGENT_TOKEN or --token-file).
    #[arg(long)]
    agent: Option<String>,
    /// File holding the agent's token: mode 0600, owned by root (hidden inside the sandbox).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// Airlock proxy address in the host namespace (default: proxy.listen).
    #[arg(long)]
    proxy: Option<std::net::SocketAddr>,
    /// CA certificate COMMAND must trust (default: <tls.ca_dir>/ca.pem).
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Run COMMAND as UID[:GID] or user name (default: a uid of its own from --uid-range).
    #[arg(long)]
    user: Option<String>,
    /// Uids handed out, one per run, when --user is not given (gid = uid).
    #[arg(long, value_name = "FIRST-LAST", default_value = "200000-265535")]
    uid_range: String,
    /// Allow COMMAND to run as root (uid or gid 0, or ids mapping to root): weak isolation.
    #[arg(long)]
    allow_root: bool,
    /// Allow --user to name a login account: COMMAND then holds that person's files, keys and
    /// sessions (a session bus starts processes outside the sandbox).
    #[arg(long)]
    allow_login_user: bool,
    /// Keep this open descriptor in COMMAND (repeatable); all others above 2 are closed.
    #[arg(long = "pass-fd", value_name = "N")]
    pass_fd: Vec<i32>,
    /// Pass this variable from the environment (repeatable); secrets are refused.
    #[arg(long = "env", value_name = "NAME")]
    env: Vec<String>,
    /// No namespace: only set the proxy variables (nothing enforces them).
    #[arg(long)]
    weak: bool,
    /// Run although no config file was found: only Airlock's files at the built-in default
    /// paths are hidden (not those of an `airlock serve` started with another config).
    #[arg(long)]
    without_config: bool,
    /// The command and its arguments.
    #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<std::ffi::OsString>,
}

pub(super) fn run_cmd(config: Config, args: RunArgs) -> Result<i32> {
    use airlock::sandbox::{AgentCredentials, Caller, RunAs, RunOptions};
    if config.source.is_none() && !args.without_config && !args.weak {
        bail!(
            "no config file found ({}): airlock run would hide only Airlock's files at the \
             built-in default paths, not those of the `airlock serve` you run. Pass --config \
             with the file `airlock serve` uses (sudo resets $HOME and $AIRLOCK_*), or \
             --without-config to run without one",
            config.home.describe()
        );
    }
    let caller = Caller::find();
    let token = match &args.token_file {
        Some(p) => Some(
            airlock::sandbox::read_token_file(p, &caller).map_err(|e| anyhow::anyhow!("{e}"))?,
        ),
        None => std::env::var("AIRLOCK_AGENT_TOKEN")
            .ok()
            .filter(|t| !t.is_empty()),
    };
    let agent = match (args.agent, token) {
        (Some(name), Some(token)) => Some(AgentCredentials { name, token }),
        (Some(name), None) => {
            bail!("--agent {name}: no token (set $AIRLOCK_AGENT_TOKEN or pass --token-file)")
        }
        (None, Some(_)) => bail!("a token was given but no --agent NAME"),
        (None, None) => None,
    };
    let user = match &args.user {
        Some(spec) => Some(RunAs::parse(spec).map_err(|e| anyhow::anyhow!("{e}"))?),
        None => None,
    };
    let uid_range =
        airlock::sandbox::UidRange::parse(&args.uid_range).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Airlock's own files: unreadable inside the sandbox.
    let mut hide = vec![
        config.store.path.clone(),
        config.tls.ca_dir.clone(),
        config.admin.token_file.clone(),
        config.audit_key_file(),
        config.link_key_file(),
    ];
    hide.extend(config.source.clone());
    hide.extend(config.admin.metrics_token_file.clone());
    hide.extend(args.token_file.clone());
    // The admin socket, where it is not in the store directory (peer credentials would refuse
    // the sandbox's uid anyway).
    hide.extend(
        config
            .admin_socket()
            .filter(|s| !s.starts_with(&config.store.path)),
    );
    // Provider credentials, webhook signing secrets (COMMAND must not forge Airlock's
    // notifications) and webhook URLs kept outside the config file (a Slack one lets anyone post).
    let signing = config
        .notify
        .channels
        .iter()
        .flat_map(|ch| match &ch.kind {
            airlock::notify::ChannelKind::Webhook { url, signing, .. } => {
                vec![url.source.as_ref(), signing.as_ref().map(|s| &s.source)]
            }
            _ => Vec::new(),
        })
        .flatten();
    let mut secret_env = Vec::new();
    for source in config.credentials.iter().map(|c| &c.source).chain(signing) {
        match source {
            airlock::config::SecretSource::Env(v) => secret_env.push(v.clone()),
            airlock::config::SecretSource::File(p) => hide.push(p.clone()),
        }
    }
    let opts = RunOptions {
        proxy: args.proxy.unwrap_or(config.proxy.listen),
        proxy_owners: airlock::listener_owner::trusted_uids(&[
            &config.store.path,
            &config.admin.token_file,
        ]),
        ca_file: args
            .ca
            .unwrap_or_else(|| config.tls.ca_dir.join(airlock::tls::CA_CERT_FILE)),
        agent,
        user,
        uid_range,
        allow_root: args.allow_root,
        allow_login_user: args.allow_login_user,
        weak: args.weak,
        pass_fds: args.pass_fd,
        env: args.env,
        secret_env,
        hide,
        owned: [
            config.agents_file.clone(),
            config.rules.dir.clone(),
            args.token_file,
        ]
        .into_iter()
        .flatten()
        .collect(),
        command: args.command,
        caller,
    };
    airlock::sandbox::run(opts).map_err(|e| anyhow::anyhow!("{e}"))
}
