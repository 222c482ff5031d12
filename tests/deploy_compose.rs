//! `docker-compose.yml` validates (`docker compose config`, or the Debian `docker-compose` that
//! `.ci/run` installs; no Docker engine is needed) and keeps its promises: the agent sits only on
//! an internal network, reaches out through Airlock with its own proxy credentials and the CA,
//! and never gets a provider token; only Airlock's environment has one. It validates before any
//! agent exists (no AGENT_TOKEN), and the documented `agents add` step works as written: the real
//! binary, with the compose service's environment and the read-only config, writes the agents
//! file on the state volume and the token to the agent's volume. `.dockerignore` keeps state and
//! keys out of the build; the image is built without debug info.

use std::process::Command;

fn compose_config() -> String {
    let env = [
        ("AIRLOCK_ADMIN_TOKEN", "test-admin-token"),
        ("GITHUB_TOKEN", "ghp_only_for_airlock"),
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
            .env_remove("AGENT_TOKEN")
            .env_remove("POSTGRES_PASSWORD")
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
    // The agent's proxy credentials: its name, and its token read from its own volume, which
    // Airlock's `agents add` writes (AIRLOCK_AGENT_TOKEN_DIR).
    assert!(agent.contains("AIRLOCK_AGENT: example-agent"), "{agent}");
    assert!(agent.contains("AIRLOCK_PROXY: airlock:8080"), "{agent}");
    assert!(
        agent.contains("airlock-agent-token:/run/airlock-agent:ro"),
        "{agent}"
    );
    assert!(agent.contains("/run/airlock-agent/token"), "{agent}");
    assert!(agent.contains("export HTTPS_PROXY="), "{agent}");
    assert!(
        airlock.contains("AIRLOCK_AGENT_TOKEN_DIR: /run/airlock-agents"),
        "{airlock}"
    );
    assert!(
        airlock.contains("airlock-agent-token:/run/airlock-agents/example-agent:rw"),
        "{airlock}"
    );
    // The config stays read-only; the agents file it names is on the writable state volume.
    assert!(
        airlock.contains("deploy/airlock.toml:/etc/airlock/airlock.toml:ro"),
        "{airlock}"
    );
    assert!(
        airlock.contains("airlock-state:/var/lib/airlock:rw"),
        "{airlock}"
    );
    let deploy: toml::Table =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/airlock.toml"))
            .expect("deploy config")
            .parse()
            .expect("TOML");
    let agents_file = deploy["agents_file"].as_str().expect("agents_file");
    assert!(
        agents_file.starts_with("/var/lib/airlock/"),
        "{agents_file}"
    );
    for var in [
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "GIT_SSL_CAINFO",
        "NODE_EXTRA_CA_CERTS",
    ] {
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
    let agents_net: Vec<&str> = nets
        .iter()
        .skip_while(|l| **l != "  agents:")
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .copied()
        .collect();
    assert!(agents_net.contains(&"    internal: true"), "{joined}");
    // The admin API is published on the host's loopback only, and the admin listener binds
    // Airlock's address on the egress network (its alias there), never the agents network's.
    assert!(airlock.contains("127.0.0.1:8081:8081"), "{airlock}");
    let command = airlock.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        command.contains("--admin-listen airlock-admin:8081") && !command.contains("0.0.0.0:8081"),
        "{command}"
    );
    let lines: Vec<&str> = airlock.lines().collect();
    let airlock_nets = entries(&lines, "networks");
    assert_eq!(
        airlock_nets,
        vec!["agents: {}", "egress:", "aliases:", "airlock-admin"],
        "the alias is on egress only: {airlock}"
    );
}

/// `airlock config check` on a deploy config, as the containers would read it.
fn config_checks(file: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["-c", file, "config", "check"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("GITHUB_TOKEN", "ghp_only_for_airlock")
        .env(
            "AIRLOCK_DATABASE_URL",
            "postgres://airlock@127.0.0.1:1/airlock",
        )
        .env_remove("AIRLOCK_CONFIG")
        .output()
        .expect("run airlock");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{file} must check: {text}");
    text
}

#[test]
fn deploy_configs_pass_the_check_the_containers_run() {
    // The scale-out config once set a lease shorter than the default send timeout, which
    // every replica refused at start.
    config_checks("deploy/airlock.toml");
    let scaled = config_checks("deploy/airlock-scale-out.toml");
    assert!(scaled.contains("Postgres"), "{scaled}");
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
        // Off the agents network: no agent reaches a replica's admin listener (or its proxy
        // port except through lb).
        assert_eq!(
            entries(r, "networks"),
            vec!["egress: null", "state: null"],
            "{joined}"
        );
    }
    // Agents' balancer: the proxy port only. Reviewers' balancer: the admin port only, on the
    // egress network only, published on the host's loopback.
    let lb_admin = service(&text, "lb-admin");
    assert_eq!(
        entries(&lb, "networks"),
        vec!["agents-scaled: null", "egress: null"]
    );
    assert_eq!(entries(&lb_admin, "networks"), vec!["egress: null"]);
    assert!(
        lb_admin.join("\n").contains("127.0.0.1:8091:8081") && !lb.join("\n").contains("ports:"),
        "{lb_admin:?} {lb:?}"
    );
    let read = |f: &str| {
        std::fs::read_to_string(format!("{}/deploy/{f}", env!("CARGO_MANIFEST_DIR"))).expect(f)
    };
    let (agents_lb, reviewers_lb) = (read("haproxy.cfg"), read("haproxy-admin.cfg"));
    assert!(
        agents_lb.contains("bind :8080")
            && !agents_lb.contains(":8081\n")
            && !agents_lb.contains("frontend admin"),
        "{agents_lb}"
    );
    assert!(
        reviewers_lb.contains("bind :8081") && !reviewers_lb.contains("bind :8080"),
        "{reviewers_lb}"
    );
    // Every service on each agents network, and nothing else there: one agent and its proxy.
    assert_eq!(on_network(&text, "agents"), vec!["agent", "airlock"]);
    assert_eq!(
        on_network(&text, "agents-scaled"),
        vec!["agent-scaled", "lb"]
    );
    let config = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/deploy/airlock-scale-out.toml"
    ))
    .expect("scale-out config");
    let parsed: toml::Table = config.parse().expect("scale-out config is TOML");
    assert_eq!(parsed["store"]["backend"].as_str(), Some("postgres"));
    // Reviewers reach the admin listeners through lb-admin's host port: the Host they send.
    assert_eq!(
        parsed["notify"]["base_url"].as_str(),
        Some("http://127.0.0.1:8091")
    );
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
    assert_eq!(entries(&agent, "networks"), vec!["agents-scaled: null"]);
    assert!(
        agent_text.contains("AIRLOCK_PROXY: lb:8080"),
        "{agent_text}"
    );
    assert!(
        agent_text.contains("airlock-agent-token-scaled:/run/airlock-agent:ro"),
        "{agent_text}"
    );
    for r in &replicas {
        let joined = r.join("\n");
        assert!(
            joined.contains("airlock-agent-token-scaled:/run/airlock-agents/example-agent:rw")
                && joined.contains("AIRLOCK_AGENT_TOKEN_DIR: /run/airlock-agents"),
            "{joined}"
        );
    }
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
    assert!(reviewers_lb.contains("uri /readyz"), "{reviewers_lb}");
    for r in [
        "airlock-1:8080 check port 8081",
        "airlock-2:8080 check port 8081",
    ] {
        assert!(haproxy.contains(r), "{r}");
    }
}

/// The services on the network `net`, in the normalised output's (alphabetical) order.
fn on_network<'a>(text: &'a str, net: &str) -> Vec<&'a str> {
    let want = format!("{net}:");
    text.lines()
        .skip_while(|l| *l != "services:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':'))
        .filter(|name| {
            entries(&service(text, name), "networks")
                .iter()
                .any(|n| n.starts_with(&want))
        })
        .collect()
}

/// `airlock agents add example-agent` as the compose step runs it: the airlock service's
/// environment (AIRLOCK_CONFIG on the read-only deploy config, AIRLOCK_AGENT_TOKEN_DIR), with the
/// container's paths mapped into a temp dir. The config is untouched; the agent lands in the
/// agents file, its token in the token directory, and `agents list` sees it.
#[test]
fn documented_agent_step_works_as_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let state = dir.path().join("var/lib/airlock");
    let tokens = dir.path().join("run/airlock-agents");
    std::fs::create_dir_all(&state).expect("mkdir");
    let deploy =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/airlock.toml"))
            .expect("deploy config")
            .replace("/var/lib/airlock", &state.display().to_string());
    let config = dir.path().join("etc/airlock/airlock.toml");
    std::fs::create_dir_all(config.parent().expect("parent")).expect("mkdir");
    std::fs::write(&config, &deploy).expect("write");
    // The service's AIRLOCK_AGENT_TOKEN_GROUP (10002, of which Airlock's user is a member
    // through group_add); a test not run as root can give a file only its own group.
    // SAFETY: plain syscalls.
    let group = match unsafe { libc::geteuid() } {
        0 => 10002,
        _ => unsafe { libc::getegid() },
    };
    assert!(
        service(&compose_config(), "airlock")
            .join("\n")
            .lines()
            .any(|l| l.trim().replace(['\'', '"'], "") == "AIRLOCK_AGENT_TOKEN_GROUP: 10002"),
        "the compose service's token group"
    );
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(args)
            .current_dir(&state)
            .env("AIRLOCK_CONFIG", &config)
            .env("AIRLOCK_HOME", &state)
            .env("AIRLOCK_AGENT_TOKEN_DIR", &tokens)
            .env("AIRLOCK_AGENT_TOKEN_GROUP", group.to_string())
            .env("GITHUB_TOKEN", "ghp_only_for_airlock")
            .output()
            .expect("run airlock")
    };
    let out = run(&["agents", "add", "example-agent"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(out.stdout.is_empty(), "the token is not printed");
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        deploy,
        "the read-only config is not written"
    );
    // Its own directory (the volume only its container mounts), holding its token alone.
    let own = tokens.join("example-agent");
    let token = std::fs::read_to_string(own.join("token")).expect("token file");
    assert!(token.starts_with("alk_"), "{token}");
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode();
    // Readable by the agent's group (the agent runs as its own uid in it), by nobody else.
    assert_eq!(mode(&own.join("token")) & 0o777, 0o640);
    assert_eq!(mode(&own) & 0o777, 0o750);
    let gid = |p: &std::path::Path| std::fs::metadata(p).expect("meta").gid();
    assert_eq!((gid(&own.join("token")), gid(&own)), (group, group));
    let agents = std::fs::read_to_string(state.join("agents.toml")).expect("agents file");
    assert!(agents.contains("name = \"example-agent\""), "{agents}");
    assert!(!agents.contains(&token), "only the digest is stored");
    let out = run(&["agents", "list"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("example-agent"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The same name again is refused, and leaves the first token in place, alone.
    let out = run(&["agents", "add", "example-agent"]);
    assert!(!out.status.success());
    assert_eq!(
        std::fs::read_to_string(own.join("token")).expect("token"),
        token
    );
    assert_eq!(std::fs::read_dir(&own).expect("own dir").count(), 1);
    // Review of session 22: every agent's token went to one directory, the volume the example
    // agent mounted whole, so it could read the next agent's token. Each has its own.
    let out = run(&["agents", "add", "second-agent"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(tokens.join("second-agent/token").exists());
    assert_eq!(std::fs::read_dir(&own).expect("own dir").count(), 1);
    // A group that is not a plain numeric non-root id is refused before anything is written,
    // and so is a group without a token directory.
    for bad in ["0", "4294967295", "agents", "-1"] {
        let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
            .args(["agents", "add", "third-agent", "--token-group", bad])
            .current_dir(&state)
            .env("AIRLOCK_CONFIG", &config)
            .env("AIRLOCK_HOME", &state)
            .env("AIRLOCK_AGENT_TOKEN_DIR", &tokens)
            .env("GITHUB_TOKEN", "ghp_only_for_airlock")
            .output()
            .expect("run airlock");
        assert!(!out.status.success(), "--token-group {bad}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_airlock"))
        .args(["agents", "add", "third-agent", "--token-group", "10002"])
        .current_dir(&state)
        .env("AIRLOCK_CONFIG", &config)
        .env("AIRLOCK_HOME", &state)
        .env_remove("AIRLOCK_AGENT_TOKEN_DIR")
        .env("GITHUB_TOKEN", "ghp_only_for_airlock")
        .output()
        .expect("run airlock");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs --token-dir"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!tokens.join("third-agent").exists());
    let agents = std::fs::read_to_string(state.join("agents.toml")).expect("agents file");
    assert!(!agents.contains("third-agent"), "{agents}");
    // A link where the agent's directory should be is not followed.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).expect("mkdir");
    std::os::unix::fs::symlink(&elsewhere, tokens.join("linked-agent")).expect("symlink");
    let out = run(&["agents", "add", "linked-agent"]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read_dir(&elsewhere).expect("dir").count(), 0);
}

/// Security review of the deployment: the agent containers ran as root with Docker's default
/// capabilities, NET_RAW among them, all on one agents network. An agent could ARP-spoof
/// Airlock's address there and read another agent's CONNECT, proxy token included, or craft
/// frames to Airlock's egress address (the admin listener); agents reached each other
/// directly; and the token file was readable by root only. Every agent service is now
/// hardened like Airlock's, runs as a uid of its own (not root, not Airlock's) whose group
/// reads its token, and has an internal network of its own, shared with its proxy only.
#[test]
fn agent_containers_are_unprivileged_and_isolated_from_each_other() {
    let text = compose_config();
    let agents: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != "services:")
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| l.starts_with("  ") && !l.starts_with("   ") && l.ends_with(':'))
        .map(|l| l.trim().trim_end_matches(':'))
        .filter(|name| {
            service(&text, name)
                .iter()
                .any(|l| l.trim().starts_with("AIRLOCK_AGENT:"))
        })
        .collect();
    assert_eq!(agents, vec!["agent", "agent-scaled"], "{text}");
    for name in agents {
        let block = service(&text, name);
        let joined = block.join("\n");
        assert_eq!(entries(&block, "cap_drop"), vec!["ALL"], "{name}: {joined}");
        assert!(
            joined.contains("- no-new-privileges:true"),
            "{name}: {joined}"
        );
        assert!(joined.contains("    read_only: true"), "{name}: {joined}");
        assert_eq!(entries(&block, "tmpfs"), vec!["/tmp"], "{name}: {joined}");
        let user = block
            .iter()
            .find_map(|l| l.strip_prefix("    user: "))
            .unwrap_or_else(|| panic!("{name} names its user: {joined}"))
            .trim_matches(['\'', '"']);
        let (uid, gid) = user.split_once(':').expect("uid:gid");
        let uid: u32 = uid.parse().expect("numeric uid");
        assert!(uid != 0 && uid != 10001, "{name}: {user}");
        // Its group is the one Airlock gives token files to.
        assert_eq!(gid, "10002", "{name}: {user}");
        assert!(
            !block.iter().any(|l| l.contains("cap_add")
                || l.contains("privileged")
                || l.contains("NET_RAW")
                || l.contains("NET_ADMIN")),
            "{name}: {joined}"
        );
        // Alone on its network with its proxy.
        let nets = entries(&block, "networks");
        assert_eq!(nets.len(), 1, "{name}: {nets:?}");
        let net = nets[0].split(':').next().expect("network");
        let members = on_network(&text, net);
        assert_eq!(members.len(), 2, "{net}: {members:?}");
        assert!(members.contains(&name), "{net}: {members:?}");
        let defs = text
            .lines()
            .skip_while(|l| *l != "networks:")
            .take_while(|l| !l.starts_with("services:"))
            .collect::<Vec<_>>();
        let def: Vec<&str> = defs
            .iter()
            .skip_while(|l| **l != format!("  {net}:"))
            .skip(1)
            .take_while(|l| l.starts_with("    "))
            .map(|l| l.trim())
            .collect();
        assert!(def.contains(&"internal: true"), "{net}: {def:?}");
        assert!(
            def.contains(&"com.docker.network.bridge.inhibit_ipv4: \"true\""),
            "{net}: {def:?}"
        );
    }
    // Airlock's containers can give token files to the agents' group.
    for name in ["airlock", "airlock-1", "airlock-2"] {
        let block = service(&text, name);
        assert!(
            entries(&block, "group_add")
                .iter()
                .any(|g| g.trim_matches(['\'', '"']) == "10002"),
            "{name}: {block:?}"
        );
    }
}

#[test]
fn docker_build_leaves_state_and_debug_info_out() {
    let root = env!("CARGO_MANIFEST_DIR");
    let ignore = std::fs::read_to_string(format!("{root}/.dockerignore")).expect(".dockerignore");
    let lines: Vec<&str> = ignore.lines().map(str::trim).collect();
    for want in [
        "target/",
        "/certs/",
        "/data/",
        "**/*-key.pem",
        "**/admin-token",
        ".env",
    ] {
        assert!(lines.contains(&want), "{want} in .dockerignore");
    }
    // The build needs tests/data (the rules coverage lists are compiled in): not ignored.
    assert!(
        !lines.iter().any(|l| *l == "tests/" || *l == "data/"),
        "{ignore}"
    );
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("CARGO_PROFILE_RELEASE_DEBUG=0"),
        "{dockerfile}"
    );
    assert!(
        dockerfile.contains("CARGO_PROFILE_RELEASE_STRIP=symbols"),
        "{dockerfile}"
    );
    assert!(
        dockerfile.contains("ENV AIRLOCK_HOME=/var/lib/airlock"),
        "{dockerfile}"
    );
}

/// Review of session 21: the image ran Airlock as root and bound its admin API on every
/// interface by default; the compose services had no capability limits, no health check, and
/// Docker's 10 s stop turned every restart into a kill; the agents network gave the host an
/// address, so an agent reached whatever listened on the Docker host around Airlock; and the
/// documented `.env` step wrote the GitHub and admin tokens readable by every local user.
#[test]
fn airlock_containers_run_unprivileged_and_agents_cannot_reach_the_host() {
    let text = compose_config();
    for name in ["airlock", "airlock-init", "airlock-1", "airlock-2"] {
        let block = service(&text, name);
        let joined = block.join("\n");
        assert_eq!(entries(&block, "cap_drop"), vec!["ALL"], "{name}: {joined}");
        assert!(joined.contains("    user: 10001:10001"), "{name}: {joined}");
        assert!(joined.contains("    read_only: true"), "{name}: {joined}");
        assert!(
            joined.contains("- no-new-privileges:true"),
            "{name}: {joined}"
        );
    }
    let airlock = service(&text, "airlock").join("\n");
    assert!(airlock.contains("    stop_grace_period: 45s"), "{airlock}");
    assert!(
        airlock.contains("      - status"),
        "health check: {airlock}"
    );
    let agent = service(&text, "agent").join("\n");
    assert!(
        agent.contains("      airlock:\n        condition: service_healthy"),
        "{agent}"
    );
    let nets = text
        .lines()
        .skip_while(|l| *l != "networks:")
        .take_while(|l| !l.starts_with("services:"))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        nets.contains("com.docker.network.bridge.inhibit_ipv4: \"true\""),
        "{nets}"
    );
    let root = env!("CARGO_MANIFEST_DIR");
    let dockerfile = std::fs::read_to_string(format!("{root}/Dockerfile")).expect("Dockerfile");
    assert!(
        dockerfile.contains("\nUSER airlock:airlock\n"),
        "{dockerfile}"
    );
    let cmd = dockerfile
        .lines()
        .find(|l| l.starts_with("CMD "))
        .expect("CMD");
    assert!(
        cmd.contains("\"--admin-listen\", \"127.0.0.1:8081\"") && !cmd.contains("0.0.0.0:8081"),
        "{cmd}"
    );
    let readme = std::fs::read_to_string(format!("{root}/README.md")).expect("README");
    let env_line = readme
        .lines()
        .find(|l| l.contains("> .env"))
        .expect("the .env step");
    assert!(env_line.starts_with("(umask 077;"), "{env_line}");
}
