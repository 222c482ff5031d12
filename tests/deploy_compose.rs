//! `docker-compose.yml` validates (`docker compose config`, or the Debian `docker-compose` that
//! `.ci/run` installs; no Docker engine is needed) and keeps its promises: the agent sits only on
//! an internal network, reaches out through Airlock with its own proxy credentials and the CA,
//! and never gets a provider token; only Airlock's environment has one.

use std::process::Command;

fn compose_config() -> String {
    let env = [
        ("AIRLOCK_ADMIN_TOKEN", "test-admin-token"),
        ("GITHUB_TOKEN", "ghp_only_for_airlock"),
        ("AGENT_TOKEN", "alk_agent_token"),
    ];
    let root = env!("CARGO_MANIFEST_DIR");
    let attempts: [(&str, &[&str]); 2] = [
        ("docker", &["compose", "-f", "docker-compose.yml", "config"]),
        ("docker-compose", &["-f", "docker-compose.yml", "config"]),
    ];
    let mut tried = Vec::new();
    for (cmd, args) in attempts {
        let out = Command::new(cmd)
            .args(args)
            .current_dir(root)
            .envs(env)
            .output();
        match out {
            Ok(o) if o.status.success() => return String::from_utf8_lossy(&o.stdout).into_owned(),
            Ok(o) => tried.push(format!(
                "{cmd} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&o.stderr).trim()
            )),
            Err(e) => tried.push(format!("{cmd}: {e}")),
        }
    }
    panic!(
        "no compose tool validated docker-compose.yml (install the docker compose plugin or \
         Debian's docker-compose; .ci/run does):\n{}",
        tried.join("\n")
    );
}

/// The lines of one top-level service's block in the normalised output.
fn service<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let header = format!("  {name}:");
    text.lines()
        .skip_while(|l| *l != header)
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .collect()
}

#[test]
fn compose_file_validates_and_isolates_the_agent() {
    let text = compose_config();
    let agent = service(&text, "agent").join("\n");
    let airlock = service(&text, "airlock").join("\n");
    assert!(!agent.is_empty() && !airlock.is_empty(), "{text}");

    assert!(
        !agent.contains("ghp_only_for_airlock") && !agent.contains("GITHUB_TOKEN"),
        "the agent never gets the provider token:\n{agent}"
    );
    assert!(airlock.contains("GITHUB_TOKEN"), "{airlock}");
    assert!(
        agent.contains("HTTPS_PROXY: http://example-agent:alk_agent_token@airlock:8080"),
        "{agent}"
    );
    for var in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS"] {
        assert!(agent.contains(&format!("{var}: /airlock/ca.pem")), "{var}");
    }
    assert!(
        agent.contains("airlock-public:/airlock:ro"),
        "CA only, read-only"
    );
    assert!(
        !agent.contains("airlock-state"),
        "the agent never mounts the CA key or the store"
    );
    // The agent is only on the internal network; Airlock bridges to the outside.
    let agent_nets: Vec<&str> = agent
        .lines()
        .skip_while(|l| l.trim() != "networks:")
        .skip(1)
        .take_while(|l| l.starts_with("      "))
        .map(str::trim)
        .collect();
    assert_eq!(agent_nets, vec!["agents: null"], "{agent}");
    let nets: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "networks:")
        .take_while(|l| !l.starts_with("services:"))
        .collect();
    let joined = nets.join("\n");
    assert!(joined.contains("  agents:\n    internal: true"), "{joined}");
    // The admin API is published on the host's loopback only.
    assert!(airlock.contains("127.0.0.1:8081:8081"), "{airlock}");
}

/// The lines of one service's block under `key:` (e.g. its networks or volumes), trimmed.
fn entries<'a>(block: &[&'a str], key: &str) -> Vec<&'a str> {
    let header = format!("    {key}:");
    block
        .iter()
        .skip_while(|l| **l != header)
        .skip(1)
        .take_while(|l| l.starts_with("      ") || l.starts_with("    - "))
        .map(|l| l.trim().trim_start_matches("- "))
        .collect()
}

#[test]
fn scale_out_profile_shares_one_database_and_one_ca() {
    let text = compose_config();
    let replicas = [service(&text, "airlock-1"), service(&text, "airlock-2")];
    let (db, lb, agent) = (
        service(&text, "postgres"),
        service(&text, "lb"),
        service(&text, "agent-scaled"),
    );
    for block in [&replicas[0], &replicas[1], &db, &lb, &agent] {
        assert!(
            block.join("\n").contains("- scale-out"),
            "in the profile: {block:?}"
        );
    }
    for r in &replicas {
        let joined = r.join("\n");
        assert!(
            joined.contains("AIRLOCK_DATABASE_URL: postgres://airlock:"),
            "{joined}"
        );
        assert!(
            joined.contains("deploy/airlock-scale-out.toml:/etc/airlock/airlock.toml:ro"),
            "{joined}"
        );
        assert_eq!(
            entries(r, "volumes")[0],
            "airlock-keys:/var/lib/airlock:rw",
            "one CA and audit key for both: {joined}"
        );
        assert!(entries(r, "networks").contains(&"state: null"), "{joined}");
    }
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/airlock-scale-out.toml"
    ))
    .expect("scale-out config");
    let parsed: toml::Table = config.parse().expect("scale-out config is TOML");
    assert_eq!(parsed["store"]["backend"].as_str(), Some("postgres"));
    // The database is reachable by the replicas only.
    assert_eq!(entries(&db, "networks"), vec!["state: null"]);
    let nets = text
        .lines()
        .skip_while(|l| *l != "networks:")
        .collect::<Vec<_>>()
        .join("\n");
    assert!(nets.contains("  state:\n    internal: true"), "{nets}");
    // The agent sees the load balancer and the CA certificate only, never a provider token.
    let agent_text = agent.join("\n");
    assert_eq!(entries(&agent, "networks"), vec!["agents: null"]);
    assert!(agent_text.contains("@lb:8080"), "{agent_text}");
    assert!(!agent_text.contains("GITHUB_TOKEN") && !agent_text.contains("airlock-keys"));
    assert!(
        agent_text.contains("airlock-public-scaled:/airlock:ro"),
        "{agent_text}"
    );
    // Health checks on /readyz in the load balancer's config, for both replicas.
    let haproxy =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/haproxy.cfg"))
            .expect("haproxy.cfg");
    assert!(haproxy.contains("uri /readyz"), "{haproxy}");
    for r in [
        "airlock-1:8080 check port 8081",
        "airlock-2:8080 check port 8081",
    ] {
        assert!(haproxy.contains(r), "{r}");
    }
}
