//! Static checks of `deploy/kubernetes/` (no cluster runs here): every manifest parses, the
//! objects reference each other by the right names and labels, the shard wiring agrees with
//! the replica count, the probes hit the metrics listener the mounted configuration opens,
//! the Secret names every password the configuration asks for, and that configuration passes
//! `iaso-probe check-config` as the pods would run it.

#[path = "static/files.rs"]
mod files;

use files::*;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::Command;

const DIR: &str = "deploy/kubernetes";

fn manifest(name: &str) -> Value {
    let text = read(format!("{DIR}/{name}"));
    let yaml: serde_yaml::Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{DIR}/{name}: {e}"));
    serde_json::to_value(yaml).unwrap()
}

fn str_of<'a>(v: &'a Value, what: &str) -> &'a str {
    v.as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {v}"))
}

fn kustomized() -> Vec<(String, Value)> {
    let k = manifest("kustomization.yaml");
    k["resources"]
        .as_array()
        .expect("kustomization lists resources")
        .iter()
        .map(|r| {
            let name = str_of(r, "resource").to_owned();
            let m = manifest(&name);
            (name, m)
        })
        .collect()
}

fn object<'a>(all: &'a [(String, Value)], kind: &str) -> &'a Value {
    let found: Vec<&Value> = all
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "exactly one {kind} in the kustomization");
    found[0]
}

fn statefulset_container(sts: &Value) -> &Value {
    let c = &sts["spec"]["template"]["spec"]["containers"];
    assert_eq!(c.as_array().map(Vec::len), Some(1), "one container");
    &c[0]
}

fn args(container: &Value) -> Vec<String> {
    container["args"]
        .as_array()
        .expect("the container has args")
        .iter()
        .map(|a| str_of(a, "arg").to_owned())
        .collect()
}

/// The configuration file the ConfigMap mounts, and its other files.
fn config_files(cm: &Value) -> Vec<(String, String)> {
    cm["data"]
        .as_object()
        .expect("ConfigMap data")
        .iter()
        .map(|(k, v)| (k.clone(), str_of(v, k).to_owned()))
        .collect()
}

fn mounted_config(all: &[(String, Value)]) -> toml::Value {
    let cm = object(all, "ConfigMap");
    let files = config_files(cm);
    let (_, text) = files
        .iter()
        .find(|(k, _)| k == "config.toml")
        .expect("the ConfigMap holds config.toml");
    toml::from_str(text).expect("config.toml is TOML")
}

#[test]
fn every_manifest_parses_with_kind_and_name() {
    let all = kustomized();
    assert!(all.len() >= 4);
    let mut files: Vec<(String, Value)> = all.clone();
    files.push((
        "secret.example.yaml".into(),
        manifest("secret.example.yaml"),
    ));
    for (name, m) in &files {
        assert!(m["apiVersion"].is_string(), "{name}: apiVersion");
        assert!(m["kind"].is_string(), "{name}: kind");
        assert!(m["metadata"]["name"].is_string(), "{name}: metadata.name");
    }
    // No password in git: the Secret is an example, outside the kustomization.
    assert!(all.iter().all(|(_, m)| m["kind"] != "Secret"));
    let secret = manifest("secret.example.yaml");
    for (k, v) in secret["stringData"].as_object().expect("stringData") {
        assert_eq!(v, "", "secret.example.yaml carries no value for {k}");
    }
}

#[test]
fn statefulset_service_pdb_and_configmap_reference_each_other() {
    let all = kustomized();
    let sts = object(&all, "StatefulSet");
    let svc = object(&all, "Service");
    let pdb = object(&all, "PodDisruptionBudget");
    let cm = object(&all, "ConfigMap");

    let pod_labels = &sts["spec"]["template"]["metadata"]["labels"];
    for selector in [
        &sts["spec"]["selector"]["matchLabels"],
        &svc["spec"]["selector"],
        &pdb["spec"]["selector"]["matchLabels"],
    ] {
        for (k, v) in selector.as_object().expect("a selector") {
            assert_eq!(&pod_labels[k], v, "selector {k}={v} matches the pods");
        }
    }
    assert_eq!(sts["spec"]["serviceName"], svc["metadata"]["name"]);
    assert_eq!(svc["spec"]["clusterIP"], "None", "a headless Service");
    assert_eq!(pdb["spec"]["maxUnavailable"], 1);

    let pod = &sts["spec"]["template"]["spec"];
    let volumes = pod["volumes"].as_array().unwrap();
    let config_volume = volumes
        .iter()
        .find(|v| v["configMap"].is_object())
        .expect("a ConfigMap volume");
    assert_eq!(config_volume["configMap"]["name"], cm["metadata"]["name"]);

    // The journal lives on the pod's own claim.
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    let claim_name = str_of(&claim["metadata"]["name"], "claim name");
    assert_eq!(claim["spec"]["accessModes"][0], "ReadWriteOnce");
    let c = statefulset_container(sts);
    let mounts = c["volumeMounts"].as_array().unwrap();
    let data_mount = mounts
        .iter()
        .find(|m| m["name"] == claim_name)
        .expect("the claim is mounted");
    let data_path = str_of(&data_mount["mountPath"], "mountPath");
    let config = mounted_config(&all);
    let journal = config["journal"]["dir"].as_str().expect("journal.dir");
    assert!(
        journal.starts_with(&format!("{data_path}/")),
        "journal.dir {journal} is on the claim mounted at {data_path}"
    );
    let config_mount = mounts
        .iter()
        .find(|m| m["name"] == config_volume["name"])
        .expect("the config volume is mounted");
    let config_path = str_of(&config_mount["mountPath"], "mountPath");
    let a = args(c);
    let i = a.iter().position(|x| x == "--config").expect("--config");
    assert_eq!(a[i + 1], format!("{config_path}/config.toml"));

    // A stop drains jobs (10 s) then shipping (10 s): the kubelet must wait longer.
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(grace >= 30, "terminationGracePeriodSeconds {grace}");
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
}

#[test]
fn shard_count_agrees_with_replicas_and_probes_hit_the_metrics_listener() {
    let all = kustomized();
    let sts = object(&all, "StatefulSet");
    let c = statefulset_container(sts);
    let a = args(c);
    assert_eq!(a[0], "run", "service mode");
    let i = a
        .iter()
        .position(|x| x == "--shard-from-hostname")
        .expect("the shard comes from the pod name");
    let n: u64 = a[i + 1].parse().expect("N is a number");
    assert_eq!(
        sts["spec"]["replicas"].as_u64(),
        Some(n),
        "--shard-from-hostname N equals replicas"
    );

    let config = mounted_config(&all);
    let listen = config["metrics"]["listen"]
        .as_str()
        .expect("[metrics] listen");
    let port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    assert!(
        listen.starts_with("0.0.0.0:"),
        "the kubelet reaches the pod IP: {listen}"
    );
    let ports = c["ports"].as_array().unwrap();
    let metrics = ports
        .iter()
        .find(|p| p["name"] == "metrics")
        .expect("a metrics port");
    assert_eq!(metrics["containerPort"].as_u64(), Some(port));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let p = &c[probe]["httpGet"];
        assert_eq!(p["path"], path, "{probe}");
        assert_eq!(p["port"], "metrics", "{probe}");
    }
}

#[test]
fn the_secret_names_every_password_the_configuration_asks_for() {
    let all = kustomized();
    let config = mounted_config(&all);
    let mut wanted = BTreeSet::new();
    fn walk(v: &toml::Value, out: &mut BTreeSet<String>) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    if k.ends_with("_env") {
                        out.insert(v.as_str().expect("*_env is a name").to_owned());
                    }
                    walk(v, out);
                }
            }
            toml::Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    walk(&config, &mut wanted);
    assert!(!wanted.is_empty());
    let secret = manifest("secret.example.yaml");
    let have: BTreeSet<String> = secret["stringData"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    assert_eq!(have, wanted, "secret.example.yaml keys = the *_env names");
    let sts = object(&all, "StatefulSet");
    let c = statefulset_container(sts);
    assert_eq!(
        c["envFrom"][0]["secretRef"]["name"],
        secret["metadata"]["name"]
    );
}

/// The mounted configuration, as the pod `iaso-probe-3` runs it, passes `check-config` (its
/// /config and /data paths moved into a scratch directory).
#[test]
fn the_mounted_configuration_passes_check_config_as_pod_3() {
    let all = kustomized();
    let cm = object(&all, "ConfigMap");
    let sts = object(&all, "StatefulSet");
    let d = tempfile::tempdir().unwrap();
    let root = d.path().display().to_string();
    let relocate = |s: &str| {
        s.replace("/config/", &format!("{root}/config/"))
            .replace("/data/", &format!("{root}/data/"))
    };
    std::fs::create_dir_all(d.path().join("config")).unwrap();
    for (name, text) in config_files(cm) {
        std::fs::write(d.path().join("config").join(name), relocate(&text)).unwrap();
    }
    let mut a = args(statefulset_container(sts));
    a[0] = "check-config".into();
    let a: Vec<String> = a.iter().map(|x| relocate(x)).collect();
    let mut c = Command::new(env!("CARGO_BIN_EXE_iaso-probe"));
    c.current_dir(d.path()).args(&a);
    for (k, _) in std::env::vars() {
        if k.starts_with("IASO_PROBE_") || k == "ELASTICSEARCH_URL" {
            c.env_remove(k);
        }
    }
    let secret = manifest("secret.example.yaml");
    for k in secret["stringData"].as_object().unwrap().keys() {
        c.env(k, "not-a-real-password");
    }
    c.env("HOSTNAME", "iaso-probe-3");
    let o = c.output().unwrap();
    let out = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.status.code(), Some(0), "{a:?}\n{out}");
    assert!(out.contains("shard 3/4"), "{out}");
    assert!(out.contains("configuration is valid"), "{out}");
    assert!(!out.contains("not-a-real-password"), "{out}");
}
