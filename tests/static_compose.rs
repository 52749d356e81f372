//! Static checks of the container files: `docker-compose.yml` (against the Compose
//! specification's JSON schema, copied to `tests/data/compose-spec.json`, and against what the
//! stack needs: services, healthchecks, start order, `$$`), `.env.example`, the `Dockerfile`
//! and `.dockerignore`. No Docker engine runs here.

#[path = "static/files.rs"]
mod files;

use std::collections::{BTreeMap, BTreeSet};

use files::*;
use serde_json::Value;

/// The compose file as JSON, with YAML merge keys (`<<: *anchor`) applied, as Compose does.
fn compose() -> Value {
    let mut yaml: serde_yaml::Value =
        serde_yaml::from_str(&read("docker-compose.yml")).expect("docker-compose.yml is YAML");
    yaml.apply_merge().expect("merge keys apply");
    serde_json::to_value(yaml).expect("compose file converts to JSON")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("docker-compose.yml has no service {name}"))
}

/// `environment` as a map, whichever form (list of `K=V` or map) the file uses.
fn environment(service: &Value) -> BTreeMap<String, String> {
    match &service["environment"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => s.clone(),
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k.clone(), v)
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| {
                let (k, v) = s.split_once('=').unwrap_or((s, ""));
                (k.to_owned(), v.to_owned())
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

fn strings(v: &Value) -> Vec<String> {
    match v {
        Value::String(s) => vec![s.clone()],
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        _ => Vec::new(),
    }
}

/// `depends_on` as name → condition.
fn depends_on(service: &Value) -> BTreeMap<String, String> {
    match &service["depends_on"] {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v["condition"]
                        .as_str()
                        .unwrap_or("service_started")
                        .to_owned(),
                )
            })
            .collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(Value::as_str)
            .map(|s| (s.to_owned(), "service_started".to_owned()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// `repo:tag` → (repo, tag).
fn image(service: &Value) -> (String, String) {
    let image = service["image"].as_str().unwrap_or("");
    let (repo, tag) = image.rsplit_once(':').unwrap_or((image, ""));
    (repo.to_owned(), tag.to_owned())
}

/// `.env.example`: variable → (value, has a comment line right above it).
fn env_example() -> BTreeMap<String, (String, bool)> {
    let text = read(".env.example");
    let mut out = BTreeMap::new();
    let mut previous_is_comment = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if let Some((k, v)) = trimmed
            .split_once('=')
            .filter(|_| !trimmed.starts_with('#'))
        {
            out.insert(
                k.trim().to_owned(),
                (v.trim().to_owned(), previous_is_comment),
            );
        }
        // A variable in a block of variables under one comment counts as commented.
        previous_is_comment =
            trimmed.starts_with('#') || (previous_is_comment && trimmed.contains('='));
    }
    out
}

/// A `$` problem in a string Compose will interpolate.
#[derive(Debug)]
enum Dollar {
    /// `${NAME…}` / `$NAME`: Compose interpolation of NAME.
    Interpolation(String),
    /// A lone `$` followed by something Compose cannot interpolate (`$(`, `$1`…).
    Bare(String),
}

/// Every `$` use in `text`, skipping `$$` (a literal `$` for the container).
fn dollars(text: &str) -> Vec<Dollar> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        match bytes.get(i + 1) {
            Some(b'$') => i += 2,
            Some(b'{') => {
                let name: String = text[i + 2..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.push(Dollar::Interpolation(name));
                i += 2;
            }
            Some(c) if c.is_ascii_alphabetic() || *c == b'_' => {
                let name: String = text[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                out.push(Dollar::Interpolation(name));
                i += 1;
            }
            _ => {
                let end = (i + 12).min(text.len());
                out.push(Dollar::Bare(text.get(i..end).unwrap_or("$").to_owned()));
                i += 1;
            }
        }
    }
    out
}

/// Strings a container's shell runs: CMD-SHELL healthchecks, string-form commands, and the
/// command of a `sh -c`/`bash -c` entrypoint. `(service, where, text)`.
fn shell_scripts(compose: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    for (name, s) in compose["services"].as_object().unwrap() {
        let test = strings(&s["healthcheck"]["test"]);
        match test.first().map(String::as_str) {
            Some("CMD-SHELL") => out.extend(
                test[1..]
                    .iter()
                    .map(|t| (name.clone(), "healthcheck".into(), t.clone())),
            ),
            Some("CMD") | Some("NONE") | None => {}
            Some(_) if s["healthcheck"]["test"].is_string() => {
                out.push((name.clone(), "healthcheck".into(), test[0].clone()))
            }
            _ => {}
        }
        let entrypoint = strings(&s["entrypoint"]);
        let shell_entry = entrypoint
            .iter()
            .any(|e| e.ends_with("sh") || e.ends_with("bash"))
            && entrypoint
                .iter()
                .any(|e| e.starts_with('-') && e.contains('c'));
        if shell_entry || s["command"].is_string() {
            out.extend(
                strings(&s["command"])
                    .into_iter()
                    .map(|c| (name.clone(), "command".into(), c)),
            );
        }
        if s["entrypoint"].is_string() {
            out.push((name.clone(), "entrypoint".into(), entrypoint[0].clone()));
        }
    }
    out
}

fn walk_strings<'a>(v: &'a Value, path: String, out: &mut Vec<(String, &'a str)>) {
    match v {
        Value::String(s) => out.push((path, s)),
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                walk_strings(x, format!("{path}[{i}]"), out);
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                walk_strings(x, format!("{path}.{k}"), out);
            }
        }
        _ => {}
    }
}

fn assert_no_errors(errors: Vec<String>) {
    assert!(errors.is_empty(), "\n{}", errors.join("\n"));
}

#[test]
fn compose_file_validates_against_the_compose_specification() {
    let schema = read_json("tests/data/compose-spec.json");
    let validator =
        jsonschema::validator_for(&schema).expect("compose-spec.json is a valid schema");
    let compose = compose();
    let errors: Vec<String> = validator
        .iter_errors(&compose)
        .map(|e| format!("docker-compose.yml {}: {e}", e.instance_path()))
        .collect();
    assert_no_errors(errors);
    assert!(
        compose.get("version").is_none(),
        "`version:` is obsolete in the Compose specification; leave it out"
    );
}

#[test]
fn elasticsearch_and_kibana_run_the_kibana_version_the_saved_objects_are_written_for() {
    let compose = compose();
    let (es_repo, es_tag) = image(service(&compose, "elasticsearch"));
    let (kb_repo, kb_tag) = image(service(&compose, "kibana"));
    assert_eq!(es_repo, "docker.elastic.co/elasticsearch/elasticsearch");
    assert_eq!(kb_repo, "docker.elastic.co/kibana/kibana");
    assert_eq!(
        es_tag, kb_tag,
        "Elasticsearch and Kibana must run the same tag"
    );
    assert!(
        es_tag.split('.').count() == 3 && es_tag.split('.').all(|p| p.parse::<u64>().is_ok()),
        "pin an exact x.y.z tag, not {es_tag:?}"
    );
    assert!(version(&es_tag) >= version("8.9.0") && version(&es_tag) < version("9.0.0"));
    let pinned = pinned_kibana_version(&saved_objects());
    assert_eq!(
        kb_tag, pinned,
        "docker-compose.yml runs Kibana {kb_tag}, the saved objects in kibana/ are stamped {pinned} (tools/kibana_objects.py KIBANA_VERSION)"
    );
}

#[test]
fn elasticsearch_is_a_secured_single_node_with_heap_data_volume_and_healthcheck() {
    let compose = compose();
    let es = service(&compose, "elasticsearch");
    let env = environment(es);
    assert_eq!(
        env.get("discovery.type").map(String::as_str),
        Some("single-node")
    );
    assert_eq!(
        env.get("xpack.security.enabled").map(String::as_str),
        Some("true")
    );
    assert!(
        env.get("ELASTIC_PASSWORD")
            .is_some_and(|v| v.starts_with("${ELASTIC_PASSWORD")),
        "ELASTIC_PASSWORD comes from .env"
    );
    let heap = env.get("ES_JAVA_OPTS").cloned().unwrap_or_default();
    assert!(
        heap.contains("-Xms") && heap.contains("-Xmx"),
        "heap set in ES_JAVA_OPTS"
    );
    assert!(
        strings(&es["volumes"])
            .iter()
            .any(|v| v.ends_with(":/usr/share/elasticsearch/data")),
        "a volume holds /usr/share/elasticsearch/data"
    );
    let test = strings(&es["healthcheck"]["test"]).join(" ");
    assert!(
        test.contains("_cluster/health") && test.contains("curl -f"),
        "healthcheck waits for cluster health with curl -f (else a 408 passes): {test}"
    );
}

#[test]
fn probers_serve_metrics_and_are_health_checked_on_readyz() {
    let compose = compose();
    for name in ["iaso-probe", "iaso-probe-demo"] {
        let s = service(&compose, name);
        let listen = environment(s)
            .get("IASO_PROBE_METRICS__LISTEN")
            .cloned()
            .unwrap_or_else(|| panic!("{name} does not enable [metrics] listen"));
        let port = listen
            .rsplit_once(':')
            .map(|(_, p)| p.to_owned())
            .unwrap_or_default();
        assert!(
            listen.starts_with("0.0.0.0:"),
            "{name}: the listener must be reachable in the container network: {listen}"
        );
        let test = strings(&s["healthcheck"]["test"]);
        assert_eq!(
            test.first().map(String::as_str),
            Some("CMD"),
            "{name}: {test:?}"
        );
        let joined = test.join(" ");
        assert!(
            joined.contains("curl -fsS")
                && joined.contains(&format!("http://127.0.0.1:{port}/readyz")),
            "{name}: the healthcheck asks /readyz on the listen port and fails on 503: {joined}"
        );
        for key in ["interval", "timeout", "retries", "start_period"] {
            assert!(
                s["healthcheck"].get(key).is_some(),
                "{name}: healthcheck.{key} missing"
            );
        }
    }
    // The main prober's endpoint is published on loopback only.
    let ports = strings(&service(&compose, "iaso-probe")["ports"]);
    assert!(
        ports
            .iter()
            .any(|p| p.starts_with("127.0.0.1:") && p.ends_with(":9464")),
        "{ports:?}"
    );
    // And the image has curl for it.
    assert!(read("Dockerfile").contains("curl"));
}

#[test]
fn kibana_is_checked_on_its_status_api_and_never_uses_the_elastic_user() {
    let compose = compose();
    let kibana = service(&compose, "kibana");
    let test = strings(&kibana["healthcheck"]["test"]).join(" ");
    assert!(
        test.contains("/api/status") && test.contains(r#""overall":{"level":"available""#),
        "healthcheck waits for the overall level available: {test}"
    );
    assert_eq!(
        depends_on(kibana).get("elasticsearch").map(String::as_str),
        Some("service_healthy")
    );
    let env = environment(kibana);
    assert_eq!(
        env.get("ELASTICSEARCH_USERNAME").map(String::as_str),
        Some("kibana_system"),
        "Kibana 8 refuses the elastic superuser"
    );
    let key = env
        .get("XPACK_ENCRYPTEDSAVEDOBJECTS_ENCRYPTIONKEY")
        .expect("encryption key set");
    let var = key
        .trim_start_matches("${")
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .next()
        .unwrap();
    let example = env_example();
    let (value, _) = example
        .get(var)
        .unwrap_or_else(|| panic!("{var} is not in .env.example"));
    assert!(
        value.len() >= 32,
        "{var} in .env.example is shorter than 32 characters"
    );
}

#[test]
fn every_service_dependency_can_be_met() {
    let compose = compose();
    let services = compose["services"].as_object().unwrap();
    let mut errors = Vec::new();
    // Every condition names an existing service that can meet it.
    for (name, s) in services {
        for (dep, condition) in depends_on(s) {
            let Some(target) = services.get(&dep) else {
                errors.push(format!("{name} depends on unknown service {dep}"));
                continue;
            };
            match condition.as_str() {
                "service_healthy" if target.get("healthcheck").is_none() => errors.push(format!(
                    "{name} waits for {dep} to be healthy, but {dep} has no healthcheck"
                )),
                "service_completed_successfully"
                    if target["restart"].as_str().is_some_and(|r| r != "no") =>
                {
                    errors.push(format!(
                        "{name} waits for {dep} to complete, but {dep} restarts"
                    ))
                }
                _ => {}
            }
            let own: BTreeSet<String> = strings(&s["profiles"]).into_iter().collect();
            let theirs: BTreeSet<String> = strings(&target["profiles"]).into_iter().collect();
            if !theirs.is_empty() && !theirs.is_subset(&own) {
                errors.push(format!(
                    "{name} depends on {dep}, which only runs under profiles {theirs:?}"
                ));
            }
        }
    }
    assert_no_errors(errors);
}

#[test]
fn setup_is_one_shot_after_elasticsearch_and_waits_for_kibana() {
    let compose = compose();
    let setup = service(&compose, "setup");
    assert_eq!(setup["restart"].as_str(), Some("no"), "setup is one-shot");
    assert!(
        strings(&setup["profiles"]).is_empty(),
        "setup runs without a profile"
    );
    assert_eq!(
        depends_on(setup).get("elasticsearch").map(String::as_str),
        Some("service_healthy")
    );
    let script = strings(&setup["command"]).join("\n");
    // The script's commands, without its comments.
    let commands: String = script
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    for step in [
        "/_security/user/kibana_system/_password",
        "/_security/role/iaso_probe_writer",
        "/_security/user/iaso_probe",
        "iaso-probe setup",
    ] {
        assert!(commands.contains(step), "setup script lacks {step}");
    }
    assert!(
        commands.find("kibana_system") < commands.find("iaso-probe setup"),
        "Kibana can only become available once kibana_system has its password"
    );
    // Kibana starts beside setup: `iaso-probe setup` must wait for it (or the script must).
    assert!(
        commands.contains("--kibana-wait-secs") || commands.contains("/api/status"),
        "setup imports the dashboards only once Kibana is available"
    );
    assert!(environment(setup).contains_key("IASO_PROBE_KIBANA__URL"));
}

#[test]
fn both_probers_start_after_setup_and_ship_as_the_writer_user() {
    let compose = compose();
    prober_runs_after_setup(&compose, "iaso-probe", None, None);
    prober_runs_after_setup(
        &compose,
        "iaso-probe-demo",
        Some("/config/demo.toml"),
        Some("demo"),
    );
}

/// `prober` starts once setup completed, runs `run --config /config/…` (that file when
/// given) under `profile`, and ships as `iaso_probe` without the superuser's password.
fn prober_runs_after_setup(
    compose: &Value,
    prober: &str,
    config: Option<&str>,
    profile: Option<&str>,
) {
    let setup = service(compose, "setup");
    let s = service(compose, prober);
    assert_eq!(
        depends_on(s).get("setup").map(String::as_str),
        Some("service_completed_successfully"),
        "{prober} starts after setup completed"
    );
    let command = strings(&s["command"]);
    assert_eq!(
        command.first().map(String::as_str),
        Some("run"),
        "{prober} runs in service mode"
    );
    let config_arg = command
        .iter()
        .skip_while(|a| *a != "--config")
        .nth(1)
        .unwrap_or_else(|| panic!("{prober}: run --config /config/…"));
    assert!(config_arg.starts_with("/config/"));
    if let Some(config) = config {
        assert_eq!(config_arg, config);
    }
    assert_eq!(strings(&s["profiles"]).first().map(String::as_str), profile);
    let volumes = strings(&s["volumes"]);
    assert!(
        volumes.iter().any(|v| v == "./config:/config:ro"),
        "{prober}: config read-only"
    );
    assert!(
        volumes.iter().any(|v| v.ends_with(":/data")),
        "{prober}: journal volume on /data"
    );
    let env = environment(s);
    let password_env = env
        .get("IASO_PROBE_ELASTICSEARCH__PASSWORD_ENV")
        .unwrap_or_else(|| panic!("{prober}: IASO_PROBE_ELASTICSEARCH__PASSWORD_ENV"));
    assert!(
        env.contains_key(password_env),
        "{prober}: the password variable {password_env} is not set in its environment"
    );
    assert!(env.contains_key("IASO_PROBE_ELASTICSEARCH__URLS"));
    // Least privilege: the probers ship as the writer user setup creates, never as the
    // superuser, and leave template installation to setup.
    assert_eq!(
        env.get("IASO_PROBE_ELASTICSEARCH__USERNAME")
            .map(String::as_str),
        Some("iaso_probe"),
        "{prober} ships as iaso_probe"
    );
    assert!(
        !env.contains_key("ELASTIC_PASSWORD"),
        "{prober} must not see the elastic superuser's password"
    );
    assert_eq!(
        env.get("IASO_PROBE_ELASTICSEARCH__SETUP_ON_START")
            .map(String::as_str),
        Some("false"),
        "{prober}: setup installs the templates"
    );
    assert_eq!(
        s["image"], setup["image"],
        "{prober} and setup run the same image"
    );
}

#[test]
fn the_demo_simulator_serves_every_environment_of_the_demo_config() {
    let compose = compose();
    let simulator = service(&compose, "simulator");
    assert_eq!(strings(&simulator["profiles"]), ["demo"]);
    assert_eq!(
        strings(&simulator["command"]),
        ["simulate", "--port", "8080"]
    );
    let demo: toml::Value = toml::from_str(&read("config/demo.toml")).expect("config/demo.toml");
    let urls: Vec<&str> = demo["environments"]
        .as_table()
        .unwrap()
        .values()
        .filter_map(|e| e.get("base_url").and_then(toml::Value::as_str))
        .collect();
    assert!(
        !urls.is_empty() && urls.iter().all(|u| *u == "http://simulator:8080"),
        "{urls:?}"
    );
}

#[test]
fn every_named_volume_is_declared() {
    let compose = compose();
    let services = compose["services"].as_object().unwrap();
    let mut errors = Vec::new();
    // Named volumes are declared.
    let declared: BTreeSet<&str> = compose["volumes"]
        .as_object()
        .map(|m| m.keys().map(String::as_str).collect())
        .unwrap_or_default();
    for (name, s) in services {
        for v in strings(&s["volumes"]) {
            let source = v.split(':').next().unwrap_or("");
            if !source.starts_with('.') && !source.starts_with('/') && !declared.contains(source) {
                errors.push(format!(
                    "{name}: volume {source} is not declared under volumes:"
                ));
            }
        }
    }
    assert_no_errors(errors);
}

#[test]
fn no_dollar_is_left_for_compose_that_was_meant_for_a_shell() {
    let compose = compose();
    let example = env_example();
    let mut errors = Vec::new();
    for (service, place, script) in shell_scripts(&compose) {
        for d in dollars(&script) {
            errors.push(format!(
                "{service} {place}: {d:?} in a shell script; Compose would interpolate it at parse time, write $$"
            ));
        }
    }
    let mut all = Vec::new();
    walk_strings(&compose, String::new(), &mut all);
    for (path, text) in all {
        for d in dollars(text) {
            match d {
                Dollar::Bare(s) => errors.push(format!("{path}: bare $ in {s:?}; write $$")),
                Dollar::Interpolation(name) if !example.contains_key(&name) => errors.push(
                    format!("{path}: ${{{name}}} is not documented in .env.example"),
                ),
                Dollar::Interpolation(_) => {}
            }
        }
    }
    assert_no_errors(errors);
}

#[test]
fn env_example_documents_every_variable_the_compose_file_uses_and_no_other() {
    let compose = compose();
    let mut all = Vec::new();
    walk_strings(&compose, String::new(), &mut all);
    let used: BTreeSet<String> = all
        .iter()
        .flat_map(|(_, text)| dollars(text))
        .filter_map(|d| match d {
            Dollar::Interpolation(n) => Some(n),
            Dollar::Bare(_) => None,
        })
        .collect();
    let example = env_example();
    let mut errors = Vec::new();
    for name in &used {
        match example.get(name) {
            None => errors.push(format!(
                "{name} is used by docker-compose.yml, absent from .env.example"
            )),
            Some((_, false)) => errors.push(format!(
                "{name} in .env.example has no comment explaining it"
            )),
            Some(_) => {}
        }
    }
    for name in example.keys() {
        if !used.contains(name) {
            errors.push(format!(
                "{name} is in .env.example but docker-compose.yml never uses it"
            ));
        }
    }
    for password in ["ELASTIC_PASSWORD", "KIBANA_PASSWORD", "ES_PROBE_PASSWORD"] {
        match example.get(password) {
            Some((v, _)) if v.len() >= 6 => {}
            _ => errors.push(format!(
                "{password} in .env.example needs a value of 6+ characters"
            )),
        }
    }
    assert_no_errors(errors);
}

/// The Dockerfile's instructions, continuation lines joined, comments dropped.
fn dockerfile_instructions() -> Vec<String> {
    read("Dockerfile")
        .replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// What the Dockerfile's build stage copies (checked to exist and not be excluded by
/// .dockerignore, which must exclude target, .env and .git).
fn dockerfile_copies(instructions: &[String]) -> Vec<String> {
    // What the build copies exists, is not excluded by .dockerignore, and covers every asset
    // the crate embeds with include_str!/include_bytes!.
    let ignore: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/').to_owned())
        .collect();
    for must in ["target", ".env", ".git"] {
        assert!(
            ignore.iter().any(|i| i == must),
            ".dockerignore lacks {must}"
        );
    }
    let mut copied = Vec::new();
    for line in instructions
        .iter()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let parts: Vec<&str> = line.split_whitespace().skip(1).collect();
        for source in &parts[..parts.len() - 1] {
            assert!(
                root().join(source).exists(),
                "Dockerfile copies {source}, which does not exist"
            );
            let top = source.split('/').next().unwrap();
            assert!(
                !ignore.iter().any(|i| i == top || i == source),
                ".dockerignore excludes {source}, which the Dockerfile copies"
            );
            copied.push(source.trim_end_matches('/').to_owned());
        }
    }
    copied
}

#[test]
fn dockerfile_builds_locked_release_and_runs_unprivileged() {
    let instructions = dockerfile_instructions();
    let froms: Vec<&String> = instructions
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .collect();
    assert!(froms.len() >= 2, "multi-stage build");
    assert!(
        froms.last().unwrap().contains("debian:") && froms.last().unwrap().contains("-slim"),
        "slim Debian runtime: {}",
        froms.last().unwrap()
    );
    assert!(
        instructions.iter().any(|l| l.contains("cargo build")
            && l.contains("--release")
            && l.contains("--locked")),
        "cargo build --release --locked"
    );
    let user = instructions
        .iter()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    assert!(
        !matches!(user.split(':').next().unwrap().trim(), "0" | "root"),
        "runs as non-root, not {user}"
    );
    let volume = instructions
        .iter()
        .find_map(|l| l.strip_prefix("VOLUME "))
        .expect("VOLUME");
    assert!(
        volume.contains("\"/config\"") && volume.contains("\"/data\""),
        "{volume}"
    );
    assert!(
        instructions
            .iter()
            .any(|l| l == r#"ENTRYPOINT ["iaso-probe"]"#),
        "ENTRYPOINT [\"iaso-probe\"]"
    );
}

#[test]
fn the_docker_build_copies_every_target_cargo_parses_and_every_embedded_asset() {
    let copied = dockerfile_copies(&dockerfile_instructions());
    // Cargo parses every target of the manifest, even for `--bin`: a declared bench or test
    // whose file is missing from the build context fails the image build.
    let manifest: toml::Value = toml::from_str(&read("Cargo.toml")).expect("Cargo.toml");
    for kind in ["bin", "bench", "test", "example"] {
        for target in manifest
            .get(kind)
            .and_then(toml::Value::as_array)
            .into_iter()
            .flatten()
        {
            let name = target["name"].as_str().unwrap_or_default();
            let path = target
                .get("path")
                .and_then(toml::Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| {
                    let dir = match kind {
                        "bin" => "src/bin",
                        "bench" => "benches",
                        "test" => "tests",
                        _ => "examples",
                    };
                    format!("{dir}/{name}.rs")
                });
            assert!(
                copied
                    .iter()
                    .any(|c| path == *c || path.starts_with(&format!("{c}/"))),
                "Cargo.toml declares [[{kind}]] {name} at {path}, which the Dockerfile's build stage does not copy"
            );
        }
    }
    let mut embedded = Vec::new();
    collect_embedded(&root().join("src"), &mut embedded);
    for asset in embedded {
        assert!(
            copied
                .iter()
                .any(|c| asset == *c || asset.starts_with(&format!("{c}/"))),
            "src embeds {asset}, which the Dockerfile's build stage does not copy"
        );
    }
}

/// Repository-relative paths of every `include_str!`/`include_bytes!` under `dir`.
fn collect_embedded(dir: &std::path::Path, out: &mut Vec<String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect_embedded(&path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for part in text.split("include_").skip(1) {
            let Some(rest) = part
                .strip_prefix("str!(\"")
                .or_else(|| part.strip_prefix("bytes!(\""))
            else {
                continue;
            };
            let relative = &rest[..rest.find('"').unwrap()];
            let absolute = path.parent().unwrap().join(relative);
            let normalized = normalize(&absolute);
            let repo = normalized.strip_prefix(root()).unwrap_or_else(|_| {
                panic!(
                    "{} embeds {relative}, outside the repository",
                    path.display()
                )
            });
            out.push(repo.to_string_lossy().into_owned());
        }
    }
}

fn normalize(path: &std::path::Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// Replaces `${NAME}`, `${NAME:-default}`, `${NAME:?message}` by the value `.env.example` gives
/// (or the default), as `docker compose` would after `cp .env.example .env`.
fn interpolate(text: &str, example: &BTreeMap<String, (String, bool)>) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let inner = &rest[start + 2..start + len];
        let name: String = inner
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let default = inner[name.len()..]
            .strip_prefix(":-")
            .or_else(|| inner[name.len()..].strip_prefix('-'))
            .unwrap_or("");
        match example.get(&name) {
            Some((value, _)) => out.push_str(value),
            None => out.push_str(default),
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    out.replace("$$", "$")
}

/// Every command line a service gives the prober: the exec-form command of services running
/// the prober's image, and the `iaso-probe …` lines of their shell scripts. (service, args).
fn prober_command_lines(compose: &Value) -> Vec<(String, Vec<String>)> {
    let example = env_example();
    let image = service(compose, "iaso-probe")["image"].clone();
    let mut out = Vec::new();
    for (name, s) in compose["services"].as_object().unwrap() {
        if s["image"] != image {
            continue;
        }
        let scripted: Vec<String> = shell_scripts(compose)
            .into_iter()
            .filter(|(svc, place, _)| svc == name && place == "command")
            .map(|(_, _, script)| script)
            .collect();
        if scripted.is_empty() {
            let args = strings(&s["command"])
                .iter()
                .map(|a| interpolate(a, &example))
                .collect();
            out.push((name.clone(), args));
            continue;
        }
        for script in scripted {
            for line in script.lines().map(str::trim) {
                let line = line.strip_prefix("exec ").unwrap_or(line);
                if let Some(args) = line.strip_prefix("iaso-probe ") {
                    let args = interpolate(args, &example)
                        .split_whitespace()
                        .map(str::to_owned)
                        .collect();
                    out.push((name.clone(), args));
                }
            }
        }
    }
    out
}

#[test]
fn every_prober_command_line_parses_and_names_a_valid_config_file() {
    use clap::Parser;
    let compose = compose();
    let lines = prober_command_lines(&compose);
    let services: BTreeSet<&str> = lines.iter().map(|(s, _)| s.as_str()).collect();
    for expected in ["setup", "iaso-probe", "iaso-probe-demo", "simulator"] {
        assert!(
            services.contains(expected),
            "no iaso-probe command line found for {expected}"
        );
    }
    let mut errors = Vec::new();
    for (service, args) in lines {
        let argv = std::iter::once("iaso-probe".to_owned()).chain(args.iter().cloned());
        if let Err(e) = iaso_probe::cli::Cli::try_parse_from(argv) {
            errors.push(format!(
                "{service}: `iaso-probe {}` is refused: {e}",
                args.join(" ")
            ));
            continue;
        }
        for path in args.iter().skip_while(|a| *a != "--config").skip(1).take(1) {
            let Some(file) = path.strip_prefix("/config/") else {
                errors.push(format!(
                    "{service}: --config {path} is outside the /config mount"
                ));
                continue;
            };
            let local = root().join("config").join(file);
            if !local.is_file() {
                errors.push(format!(
                    "{service}: --config {path}, but config/{file} does not exist"
                ));
                continue;
            }
            let source = iaso_probe::config::ConfigSource::Files(vec![local]);
            if let Err(e) = iaso_probe::config::load::load_with(&source, false) {
                errors.push(format!("{service}: config/{file} is invalid: {e}"));
            }
        }
    }
    assert_no_errors(errors);
}

#[test]
fn dollar_scanner_tells_interpolation_from_escapes_and_bare_dollars() {
    let found = |t: &str| format!("{:?}", dollars(t));
    assert_eq!(found("a $$b $${C} $$((1+1))"), "[]");
    assert_eq!(
        found("${A:-x} $B"),
        r#"[Interpolation("A"), Interpolation("B")]"#
    );
    assert_eq!(found("$(date)"), r#"[Bare("$(date)")]"#);
}

/// The single node holds no replica (or every index stays yellow), and the writer role the
/// probers ship as covers every data stream the index templates create.
#[test]
fn the_single_node_gets_no_replica_and_the_writer_role_covers_every_data_stream() {
    let compose = compose();
    let setup = service(&compose, "setup");
    assert_eq!(
        environment(setup)
            .get("IASO_PROBE_ELASTICSEARCH__NUMBER_OF_REPLICAS")
            .map(String::as_str),
        Some("0"),
        "setup installs the templates: it must write number_of_replicas 0"
    );
    let script = read("docker-compose.yml");
    let role = script
        .lines()
        .find(|l| l.contains("\"indices\":[{\"names\":"))
        .expect("the iaso_probe_writer role");
    let json_start = role.find('{').unwrap();
    let json_end = role.rfind('}').unwrap();
    let role: Value = serde_json::from_str(&role[json_start..=json_end]).unwrap();
    let names: Vec<String> = role["indices"][0]["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect();
    for (template, patterns, _) in index_templates() {
        for pattern in patterns {
            // A concrete stream under the pattern must be matched by some role name.
            let stream = pattern.replace('*', "lab");
            assert!(
                names.iter().any(|n| glob_match(n, &stream)),
                "template {template}: the writer role ({names:?}) cannot write {stream}"
            );
        }
    }
}
