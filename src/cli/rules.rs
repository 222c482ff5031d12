//! `airlock rules`: check the catalog, report its coverage, test a request against it.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;

use airlock::config::Config;
use airlock::rules::{Action, Catalog};

use super::serve::catalog_options;

#[derive(Subcommand)]
pub(super) enum RulesCommand {
    /// Validate every rule file; errors name file:line:column.
    Check {
        /// Rules directory (default: rules.dir, else the embedded catalog).
        #[arg(long, conflicts_with = "rules_dir")]
        dir: Option<PathBuf>,
    },
    /// Count the published GitHub and Stripe routes and mutations per bucket and list any the
    /// catalog does not classify explicitly (exit status 1 if there is one).
    Coverage {
        /// Print every route with its bucket, tool and reason.
        #[arg(long)]
        routes: bool,
        /// Rules directory (default: rules.dir, else the embedded catalog).
        #[arg(long, conflicts_with = "rules_dir")]
        dir: Option<PathBuf>,
    },
    /// Print the verdict (bucket) for a request and which rule matched and why.
    Test {
        method: String,
        /// The request's absolute URL, e.g. https://api.github.com/repos/o/r.
        #[arg(value_parser = absolute_url)]
        url: String,
        /// Request body file.
        #[arg(long)]
        body: Option<PathBuf>,
        /// Extra header, e.g. "content-type: application/json" (repeatable).
        #[arg(long)]
        header: Vec<String>,
        /// Rules directory (default: rules.dir, else the embedded catalog).
        #[arg(long, conflicts_with = "rules_dir")]
        dir: Option<PathBuf>,
    },
}

/// A URL with a scheme (http or https) and a host: `notaurl` parses as a bare host name, which
/// no rule names, so it was classified as allowed.
fn absolute_url(s: &str) -> std::result::Result<String, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("{s:?} is not a URL: {e}"))?;
    match (uri.scheme_str(), uri.host()) {
        (Some("http" | "https"), Some(host)) if !host.is_empty() => Ok(s.to_string()),
        (Some(other), Some(_)) => Err(format!(
            "{s:?}: scheme {other:?}; Airlock sees http and https requests only"
        )),
        _ => Err(format!(
            "{s:?} is not an absolute URL: give the scheme and host, e.g. \
             https://api.github.com/repos/o/r"
        )),
    }
}

impl RulesCommand {
    /// The command's own `--dir`, if given.
    pub(super) fn dir(&self) -> Option<&PathBuf> {
        match self {
            RulesCommand::Check { dir }
            | RulesCommand::Test { dir, .. }
            | RulesCommand::Coverage { dir, .. } => dir.as_ref(),
        }
    }
}

pub(super) fn rules_cmd(config: Config, cmd: RulesCommand) -> Result<()> {
    let dir = cmd.dir().cloned().or(config.rules.dir.clone());
    let catalog = match &dir {
        Some(d) => Catalog::load_dir(d, &catalog_options(&config)),
        None => Catalog::embedded(&catalog_options(&config)),
    }
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    match cmd {
        RulesCommand::Check { .. } => {
            let src = dir
                .map(|d| d.display().to_string())
                .unwrap_or_else(|| "<embedded catalog>".into());
            println!(
                "rules OK: {src}: {} rules for {}",
                catalog.rule_count(),
                catalog.hosts().join(", ")
            );
        }
        RulesCommand::Coverage { routes, .. } => {
            if !rules_coverage(&catalog, routes) {
                std::process::exit(1);
            }
        }
        RulesCommand::Test {
            method,
            url,
            body,
            header,
            ..
        } => {
            let uri: http::Uri = url.parse().with_context(|| format!("bad URL {url:?}"))?;
            let host = uri.host().context("URL needs a host")?.to_string();
            let port = uri
                .port_u16()
                .unwrap_or(if uri.scheme_str() == Some("http") {
                    80
                } else {
                    443
                });
            let pq = uri
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/")
                .to_string();
            let mut headers = http::HeaderMap::new();
            for h in header {
                let (k, v) = h
                    .split_once(':')
                    .with_context(|| format!("--header {h:?}: expected NAME: VALUE"))?;
                headers.append(
                    http::HeaderName::from_bytes(k.trim().as_bytes())?,
                    http::HeaderValue::from_str(v.trim())?,
                );
            }
            let body = body
                .map(|p| std::fs::read(&p).with_context(|| format!("reading {}", p.display())))
                .transpose()?;
            let head = airlock::rules::RequestHead {
                method: &method,
                host: &host,
                port,
                path_and_query: &pq,
                headers: &headers,
            };
            if !catalog.inspects(&host) {
                println!("note: {host} is named by no service; the proxy applies proxy.unknown_hosts / inspect_hosts");
            }
            let needs = catalog.needs_body(&head);
            if needs && body.is_none() {
                println!("note: a rule needs the body; without --body the gate fails closed");
            }
            println!("{}", catalog.evaluate(&head, body.as_deref()));
        }
    }
    Ok(())
}

/// Prints the coverage report; `false` when a listed route or mutation is unclassified.
fn rules_coverage(catalog: &Catalog, list_routes: bool) -> bool {
    use airlock::rules::coverage;
    use std::fmt::Write as _;
    let mut out = String::new();
    let routes = coverage::routes(catalog);
    if list_routes {
        for r in &routes {
            let what = match r.method {
                Some(m) => format!("{} {m} {}", r.service, r.name),
                None => format!("{} mutation {}", r.service, r.name),
            };
            match &r.base {
                Some(b) => {
                    let mut line =
                        format!("{:<8} {what}  [{}] {}", b.action.as_str(), b.tool, b.reason);
                    for c in &r.stricter {
                        line.push_str(&format!(
                            "; {} when [{}] {}",
                            c.action.as_str(),
                            c.tool,
                            c.reason
                        ));
                    }
                    let _ = writeln!(out, "{line}");
                }
                None => {
                    let _ = writeln!(out, "{:<8} {what}", "NONE");
                }
            }
        }
        out.push('\n');
    }
    let mut ok = true;
    for ((service, kind), t) in coverage::tally(&routes) {
        let buckets = [
            Action::Allow,
            Action::Notify,
            Action::Escalate,
            Action::Block,
        ]
        .iter()
        .map(|a| format!("{} {}", a.as_str(), t.buckets.get(a).copied().unwrap_or(0)))
        .collect::<Vec<_>>()
        .join(", ");
        let _ = writeln!(
            out,
            "{service} {}: {} listed: {buckets}; {} stricter under conditions; {} unclassified",
            kind.as_str(),
            t.listed,
            t.conditional,
            t.unclassified.len()
        );
        for u in &t.unclassified {
            let _ = writeln!(out, "  unclassified: {u}");
            ok = false;
        }
        for d in &t.duplicated {
            let _ = writeln!(out, "  more than one base entry: {d}");
        }
    }
    if ok {
        out.push_str("every listed route and mutation is classified explicitly\n");
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), out.as_bytes());
    ok
}
