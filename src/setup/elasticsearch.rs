//! Elasticsearch side of `setup`: the ILM policy, component templates and index templates of
//! `config/elasticsearch/`, embedded at build time and sent with `PUT` (which overwrites, so
//! running setup twice is harmless).
//!
//! Not every cluster has ILM: the OSS build, Elasticsearch Serverless and some hosted offerings
//! manage data streams with the data stream lifecycle instead. [`install_elasticsearch`] asks
//! the cluster first ([`detect_retention`]) and, without ILM, sends [`without_ilm`] of the plan:
//! no policy, no `index.lifecycle.name`, and the policy's delete age as
//! `template.lifecycle.data_retention` of each index template.

use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::Value;

use super::{redact_url, truncate, SetupError, SetupRequest};

/// ILM policies: (name, body). The name is the file name without `.json`.
const ILM_POLICIES: &[(&str, &str)] = &[(
    "iaso-probe",
    include_str!("../../config/elasticsearch/ilm/iaso-probe.json"),
)];

/// Component templates, in install order.
const COMPONENT_TEMPLATES: &[(&str, &str)] = &[
    (
        "iaso-mappings",
        include_str!("../../config/elasticsearch/component_templates/iaso-mappings.json"),
    ),
    (
        "iaso-settings",
        include_str!("../../config/elasticsearch/component_templates/iaso-settings.json"),
    ),
];

/// Index templates; they name the component templates above, which must exist first. The
/// `<type>-<dataset>-*` ones receive the results; the `iaso-*` ones are the legacy stream
/// names, kept so the streams written before stay mapped (readable, and writable by older
/// probers during an upgrade).
const INDEX_TEMPLATES: &[(&str, &str)] = &[
    (
        "synthetics-iaso.checks",
        include_str!("../../config/elasticsearch/index_templates/synthetics-iaso.checks.json"),
    ),
    (
        "logs-iaso.jobs",
        include_str!("../../config/elasticsearch/index_templates/logs-iaso.jobs.json"),
    ),
    (
        "iaso-checks",
        include_str!("../../config/elasticsearch/index_templates/iaso-checks.json"),
    ),
    (
        "iaso-jobs",
        include_str!("../../config/elasticsearch/index_templates/iaso-jobs.json"),
    ),
];

fn parse_asset(kind: &str, name: &str, text: &str) -> Value {
    // The assets are compiled in and checked by the tests below: a parse failure is a build
    // defect, not a runtime condition.
    serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("embedded {kind} {name} is not valid JSON: {e}"))
}

/// What the configuration changes in the embedded assets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PlanOptions {
    /// The policy's delete age (`30d`).
    pub delete_after: Option<String>,
    /// The policy's rollover age (`30d`).
    pub rollover_max_age: Option<String>,
    /// The policy's rollover primary shard size (`50gb`).
    pub rollover_max_primary_shard_size: Option<String>,
    /// `index.number_of_replicas`.
    pub replicas: Option<u32>,
}

impl PlanOptions {
    /// The options `[elasticsearch]` sets.
    pub fn from_config(es: &crate::config::ElasticsearchConfig) -> Self {
        Self {
            delete_after: Some(es.ilm_delete_after.clone()),
            rollover_max_age: Some(es.rollover_max_age.clone()),
            rollover_max_primary_shard_size: Some(es.rollover_max_primary_shard_size.clone()),
            replicas: Some(es.number_of_replicas),
        }
    }
}

/// The requests that install everything, in dependency order: ILM policy, component templates,
/// index templates. `ilm_delete_after` (an Elasticsearch time value such as `"30d"`) replaces
/// the `min_age` of the policy's delete phase when given.
pub fn elasticsearch_plan(ilm_delete_after: Option<&str>) -> Vec<SetupRequest> {
    elasticsearch_plan_with(&PlanOptions {
        delete_after: ilm_delete_after.map(str::to_owned),
        ..Default::default()
    })
}

/// [`elasticsearch_plan`] with every configurable value: delete age, rollover, replicas.
pub fn elasticsearch_plan_with(opts: &PlanOptions) -> Vec<SetupRequest> {
    let mut plan = Vec::new();
    for (name, text) in ILM_POLICIES {
        let mut body = parse_asset("ilm policy", name, text);
        if let Some(age) = &opts.delete_after {
            if let Some(delete) = body.pointer_mut("/policy/phases/delete") {
                delete["min_age"] = Value::String(age.clone());
            }
        }
        if let Some(rollover) = body.pointer_mut("/policy/phases/hot/actions/rollover") {
            if let Some(age) = &opts.rollover_max_age {
                rollover["max_age"] = Value::String(age.clone());
            }
            if let Some(size) = &opts.rollover_max_primary_shard_size {
                rollover["max_primary_shard_size"] = Value::String(size.clone());
            }
        }
        plan.push(SetupRequest {
            method: "PUT",
            path: format!("/_ilm/policy/{name}"),
            body,
        });
    }
    for (name, text) in COMPONENT_TEMPLATES {
        let mut body = parse_asset("component template", name, text);
        if let (Some(n), Some(Value::Object(settings))) =
            (opts.replicas, body.pointer_mut("/template/settings"))
        {
            settings.insert("index.number_of_replicas".to_owned(), Value::from(n));
        }
        plan.push(SetupRequest {
            method: "PUT",
            path: format!("/_component_template/{name}"),
            body,
        });
    }
    for (name, text) in INDEX_TEMPLATES {
        plan.push(SetupRequest {
            method: "PUT",
            path: format!("/_index_template/{name}"),
            body: parse_asset("index template", name, text),
        });
    }
    plan
}

/// How the data streams' age limit is enforced on the target cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Retention {
    /// The cluster has ILM: the `iaso-probe` policy rolls over and deletes.
    Ilm,
    /// No ILM (the ILM API answered `status` with `answer`): each index template carries
    /// `lifecycle.data_retention` instead.
    DataStreamLifecycle {
        /// HTTP status of `GET /_ilm/status`.
        status: u16,
        /// What the cluster said, shortened.
        answer: String,
    },
}

/// What [`install_elasticsearch_reporting`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installed {
    /// Requests applied.
    pub applied: usize,
    /// The resources created or updated (`_index_template/logs-iaso.jobs`, …), in order.
    pub resources: Vec<String>,
    /// Field types the cluster lacks, mapped with their stand-ins (`wildcard as keyword`).
    pub stand_ins: Vec<String>,
    /// The retention mechanism chosen.
    pub retention: Retention,
    /// The delete age in force (`30d`…), when the plan carries one.
    pub delete_after: Option<String>,
}

impl Installed {
    /// For people: what was created or updated, where the results go, and which lifecycle
    /// was chosen, and why.
    pub fn describe(&self) -> String {
        let mut text = self.describe_lifecycle();
        text.push_str(&format!(
            "\n  created or updated: {}\n  results go to the data streams synthetics-iaso.checks-<namespace> and logs-iaso.jobs-<namespace> (namespace = environment unless environments.<name>.namespace is set); the legacy templates iaso-checks and iaso-jobs are kept, so iaso-checks-* and iaso-jobs-* stay readable (the data views cover both)",
            self.resources.join(", ")
        ));
        if !self.stand_ins.is_empty() {
            text.push_str(&format!(
                "\n  field types this cluster lacks are mapped with stand-ins: {}",
                self.stand_ins.join(", ")
            ));
        }
        text
    }

    fn describe_lifecycle(&self) -> String {
        let age = self.delete_after.as_deref().unwrap_or("unset");
        match &self.retention {
            Retention::Ilm => format!(
                "{} resources installed (ILM policy, component and index templates; the cluster has ILM, data deleted {age} after rollover)",
                self.applied
            ),
            Retention::DataStreamLifecycle { status, answer } => format!(
                "{} resources installed (component and index templates; the cluster has no ILM (GET /_ilm/status answered {status}: {answer}), so data streams use the data stream lifecycle, data_retention {age}, rollover by the cluster's cluster.lifecycle.default.rollover)",
                self.applied
            ),
        }
    }
}

/// The path that tells whether ILM exists: 200 with ILM, 400 "no handler found" without x-pack,
/// 404/410 where the API is switched off (Serverless answers 410 `api_not_available_exception`).
pub(crate) const ILM_STATUS_PATH: &str = "/_ilm/status";

/// Judges the answer to `GET /_ilm/status`. 401/403 mean security is on, which needs x-pack, so
/// ILM is there (the policy `PUT` then reports the missing privilege itself).
pub fn classify_ilm_status(status: u16, body: &str) -> Result<Retention, SetupError> {
    match status {
        200..=299 | 401 | 403 => Ok(Retention::Ilm),
        400 | 404 | 405 | 410 if missing_api(status, body) => Ok(Retention::DataStreamLifecycle {
            status,
            answer: error_text(body),
        }),
        _ => Err(SetupError::ElasticsearchStatus {
            method: "GET",
            path: ILM_STATUS_PATH.to_owned(),
            status,
            error_type: "cannot tell whether the cluster has ILM".to_owned(),
            reason: error_text(body),
        }),
    }
}

/// True when an answer says the API itself does not exist (as opposed to a bad request to an
/// API that exists): 404/410, or a 400/405 whose error is the REST layer's "no handler found" /
/// "Incorrect HTTP method", or `api_not_available_exception`.
pub(crate) fn missing_api(status: u16, body: &str) -> bool {
    let text = error_text(body);
    matches!(status, 404 | 410)
        || text.starts_with("no handler found for uri")
        || text.starts_with("Incorrect HTTP method for uri")
        || body.contains("api_not_available_exception")
}

/// The error message of an answer: `error` when it is a string (the REST layer's own 400s),
/// `error.type: error.reason` when an object, else the body itself, shortened.
fn error_text(body: &str) -> String {
    match serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|j| j.get("error").cloned())
    {
        Some(Value::String(s)) => truncate(&s, 300),
        Some(Value::Object(e)) => truncate(
            &format!(
                "{}: {}",
                e.get("type").and_then(Value::as_str).unwrap_or("unknown"),
                e.get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            ),
            300,
        ),
        _ => truncate(body.trim(), 300),
    }
}

/// The plan for a cluster without ILM: the policy requests dropped, `index.lifecycle.name`
/// removed from every settings block, and each index template given
/// `template.lifecycle.data_retention` = the policy's delete age (ILM counts it from rollover,
/// the data stream lifecycle from the backing index's rollover as well, so the meaning holds).
pub(crate) fn without_ilm(plan: &[SetupRequest]) -> Vec<SetupRequest> {
    let retention = delete_after(plan);
    plan.iter()
        .filter(|r| !r.path.starts_with("/_ilm/"))
        .cloned()
        .map(|mut r| {
            if let Some(settings) = r.body.pointer_mut("/template/settings") {
                remove_lifecycle_name(settings);
            }
            if r.path.starts_with("/_index_template/") {
                if let Some(age) = &retention {
                    let template = r
                        .body
                        .as_object_mut()
                        .map(|o| o.entry("template").or_insert_with(|| serde_json::json!({})));
                    if let Some(Value::Object(t)) = template {
                        t.insert(
                            "lifecycle".to_owned(),
                            serde_json::json!({ "data_retention": age }),
                        );
                    }
                }
            }
            r
        })
        .collect()
}

/// Field types that only a cluster with x-pack has, and what replaces each without it (ECS's
/// `wildcard` for `url.full`, `constant_keyword` for `data_stream.*`): `keyword` indexes the
/// same values and answers the same queries and aggregations the dashboards make.
pub(crate) const XPACK_FIELD_TYPES: &[(&str, &str)] =
    &[("wildcard", "keyword"), ("constant_keyword", "keyword")];

/// Every field type the templates use that a cluster may lack, and its stand-in: the x-pack
/// ones, and `match_only_text` (ECS's `error.message`), which lives in the `mapper-extras`
/// module a trimmed node may not load. A mapping refused with "No handler for type [T]" is
/// sent again with T replaced ([`send_plan`]).
pub(crate) const OPTIONAL_FIELD_TYPES: &[(&str, &str)] = &[
    ("wildcard", "keyword"),
    ("constant_keyword", "keyword"),
    ("match_only_text", "text"),
];

/// Replaces field type `from` by `to` in the mappings of `body`; true when there was one.
fn replace_type(body: &mut Value, from: &str, to: &str) -> bool {
    fn walk(v: &mut Value, from: &str, to: &str) -> bool {
        match v {
            Value::Object(map) => {
                let mut hit = false;
                if map.get("type").and_then(Value::as_str) == Some(from) {
                    map.insert("type".into(), Value::from(to));
                    if to == "keyword" {
                        map.insert("ignore_above".into(), Value::from(1024));
                    }
                    hit = true;
                }
                for child in map.values_mut() {
                    hit |= walk(child, from, to);
                }
                hit
            }
            Value::Array(items) => items.iter_mut().fold(false, |h, i| walk(i, from, to) | h),
            _ => false,
        }
    }
    body.pointer_mut("/template/mappings")
        .is_some_and(|m| walk(m, from, to))
}

/// The field type named by a refusal `No handler for type [T] declared on field [f]`.
fn missing_type(reason: &str) -> Option<&str> {
    let start = reason.find("No handler for type [")? + "No handler for type [".len();
    let rest = &reason[start..];
    Some(&rest[..rest.find(']')?])
}

/// The plan for a cluster without x-pack (the OSS build): every x-pack field type replaced
/// by its core equivalent ([`XPACK_FIELD_TYPES`]).
pub(crate) fn without_xpack_types(plan: &[SetupRequest]) -> Vec<SetupRequest> {
    plan.iter()
        .cloned()
        .map(|mut r| {
            for (from, to) in XPACK_FIELD_TYPES {
                replace_type(&mut r.body, from, to);
            }
            r
        })
        .collect()
}

/// The path that tells whether the cluster has x-pack: 200 on the default distribution, 400
/// "no handler found" on the OSS build.
pub(crate) const XPACK_PATH: &str = "/_xpack";

/// Judges the answer to `GET /_xpack`: x-pack answers 2xx (401/403 with security on, which is
/// x-pack too). Without it the path is no API at all: the OSS build takes `_xpack` for an
/// index name and answers 400 `invalid_index_name_exception`, others "no handler" or 410.
pub(crate) fn classify_xpack(status: u16, _body: &str) -> bool {
    (200..300).contains(&status) || matches!(status, 401 | 403)
}

/// The delete age of the plan's ILM policy (`/policy/phases/delete/min_age`).
pub(crate) fn delete_after(plan: &[SetupRequest]) -> Option<String> {
    plan.iter()
        .filter(|r| r.path.starts_with("/_ilm/policy/"))
        .find_map(|r| r.body.pointer("/policy/phases/delete/min_age"))
        .and_then(Value::as_str)
        .map(str::to_owned)
}

/// Removes `index.lifecycle.*` whether written flat (`"index.lifecycle.name"`) or nested.
fn remove_lifecycle_name(settings: &mut Value) {
    let Some(map) = settings.as_object_mut() else {
        return;
    };
    map.retain(|k, _| !k.starts_with("index.lifecycle."));
    if let Some(Value::Object(index)) = map.get_mut("index") {
        index.remove("lifecycle");
        index.retain(|k, _| !k.starts_with("lifecycle."));
    }
}

/// Asks the cluster whether it has ILM (`GET /_ilm/status`).
pub(crate) async fn detect_retention(client: &Elasticsearch) -> Result<Retention, SetupError> {
    let (status, text) = get(client, ILM_STATUS_PATH).await?;
    classify_ilm_status(status, &text)
}

/// `GET path`: the status and the body.
async fn get(client: &Elasticsearch, path: &'static str) -> Result<(u16, String), SetupError> {
    let transport = |e: String| SetupError::ElasticsearchTransport {
        method: "GET",
        path: path.to_owned(),
        message: redact_url(&e),
    };
    let response = client
        .send(
            Method::Get,
            path,
            HeaderMap::new(),
            Option::<&()>::None,
            Option::<JsonBody<Value>>::None,
            None,
        )
        .await
        .map_err(|e| transport(e.to_string()))?;
    let status = response.status_code().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| transport(format!("reading the answer: {e}")))?;
    Ok((status, text))
}

fn method_of(request: &SetupRequest) -> Result<Method, SetupError> {
    match request.method {
        "PUT" => Ok(Method::Put),
        "POST" => Ok(Method::Post),
        "GET" => Ok(Method::Get),
        "DELETE" => Ok(Method::Delete),
        _ => Err(SetupError::UnsupportedMethod {
            method: request.method,
            path: request.path.clone(),
        }),
    }
}

/// [`install_elasticsearch_reporting`], returning only the number of requests applied.
pub async fn install_elasticsearch(
    client: &Elasticsearch,
    plan: &[SetupRequest],
) -> Result<usize, SetupError> {
    install_elasticsearch_reporting(client, plan)
        .await
        .map(|i| i.applied)
}

/// Detects ILM, adapts the plan to the cluster ([`without_ilm`] when it has none), and sends it
/// in order through the official client, stopping at the first failure. `send()` returns `Ok`
/// for 4xx/5xx answers, so the status is checked here, and a 2xx answer must carry
/// `"acknowledged": true`.
pub async fn install_elasticsearch_reporting(
    client: &Elasticsearch,
    plan: &[SetupRequest],
) -> Result<Installed, SetupError> {
    let retention = detect_retention(client).await?;
    let (status, body) = get(client, XPACK_PATH).await?;
    let xpack = classify_xpack(status, &body);
    let core_types;
    let plan = if xpack {
        plan
    } else {
        tracing::info!(
            status,
            "elasticsearch has no x-pack: wildcard and constant_keyword fields are mapped as keyword"
        );
        core_types = without_xpack_types(plan);
        &core_types
    };
    let adapted;
    let plan = match &retention {
        Retention::Ilm => plan,
        Retention::DataStreamLifecycle { status, answer } => {
            tracing::info!(
                status,
                answer = %answer,
                "elasticsearch has no ILM: data streams use the data stream lifecycle (lifecycle.data_retention) instead of the ILM policy"
            );
            adapted = without_ilm(plan);
            &adapted
        }
    };
    let (applied, mut stand_ins) = send_plan(client, plan).await?;
    if !xpack {
        stand_ins.splice(0..0, XPACK_FIELD_TYPES.iter().copied());
    }
    Ok(Installed {
        applied,
        stand_ins: stand_ins
            .into_iter()
            .map(|(a, b)| format!("{a} as {b}"))
            .collect(),
        resources: plan
            .iter()
            .map(|r| r.path.trim_start_matches('/').to_owned())
            .collect(),
        retention,
        delete_after: delete_after(plan).or_else(|| {
            plan.iter()
                .find_map(|r| r.body.pointer("/template/lifecycle/data_retention"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        }),
    })
}

/// Sends the plan in order. A mapping the cluster refuses for a field type it lacks ("No
/// handler for type [T]", T one of [`OPTIONAL_FIELD_TYPES`]) is sent again with T replaced by
/// its stand-in, and the replacement is kept for the rest of the plan; returns the number of
/// requests and the replacements made.
async fn send_plan(
    client: &Elasticsearch,
    plan: &[SetupRequest],
) -> Result<(usize, Vec<(&'static str, &'static str)>), SetupError> {
    let mut replaced: Vec<(&'static str, &'static str)> = Vec::new();
    for request in plan {
        let mut request = request.clone();
        for (from, to) in &replaced {
            replace_type(&mut request.body, from, to);
        }
        loop {
            match send_one(client, &request).await {
                Err(SetupError::ElasticsearchStatus {
                    status: 400,
                    ref reason,
                    ..
                }) if missing_type(reason)
                    .is_some_and(|t| OPTIONAL_FIELD_TYPES.iter().any(|(from, _)| *from == t)) =>
                {
                    let t = missing_type(reason).expect("checked");
                    let &(from, to) = OPTIONAL_FIELD_TYPES
                        .iter()
                        .find(|(from, _)| *from == t)
                        .expect("checked");
                    if !replace_type(&mut request.body, from, to) {
                        // Nothing left to replace: the refusal stands.
                        return Err(send_one(client, &request).await.unwrap_err());
                    }
                    tracing::info!(path = %request.path, missing = from, instead = to, "elasticsearch lacks a field type: mapped with its stand-in");
                    replaced.push((from, to));
                }
                other => {
                    other?;
                    break;
                }
            }
        }
        tracing::info!(method = request.method, path = %request.path, "elasticsearch resource installed");
    }
    Ok((plan.len(), replaced))
}

async fn send_one(client: &Elasticsearch, request: &SetupRequest) -> Result<(), SetupError> {
    let method = method_of(request)?;
    let response = client
        .send(
            method,
            &request.path,
            HeaderMap::new(),
            Option::<&()>::None,
            Some(JsonBody::new(&request.body)),
            None,
        )
        .await
        .map_err(|e| SetupError::ElasticsearchTransport {
            method: request.method,
            path: request.path.clone(),
            message: redact_url(&e.to_string()),
        })?;
    let status = response.status_code().as_u16();
    let text = response
        .text()
        .await
        .map_err(|e| SetupError::ElasticsearchTransport {
            method: request.method,
            path: request.path.clone(),
            message: redact_url(&format!("reading the answer: {e}")),
        })?;
    check_answer(request, status, &text)
}

/// Judges one answer: 2xx with `"acknowledged": true`, or an error naming the ES error type and
/// reason.
pub(crate) fn check_answer(
    request: &SetupRequest,
    status: u16,
    body: &str,
) -> Result<(), SetupError> {
    let json: Option<Value> = serde_json::from_str(body).ok();
    if !(200..300).contains(&status) && missing_api(status, body) {
        return Err(SetupError::ElasticsearchMissingApi {
            method: request.method,
            path: request.path.clone(),
            status,
            answer: error_text(body),
        });
    }
    if !(200..300).contains(&status) {
        let error = json.as_ref().and_then(|j| j.get("error"));
        let (error_type, reason) = match error {
            Some(Value::Object(e)) => (
                e.get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_owned(),
                e.get("reason")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
                    .to_owned(),
            ),
            Some(Value::String(s)) => ("error".to_owned(), s.clone()),
            _ => ("unknown".to_owned(), truncate(body, 300)),
        };
        return Err(SetupError::ElasticsearchStatus {
            method: request.method,
            path: request.path.clone(),
            status,
            error_type,
            reason,
        });
    }
    let acknowledged = json
        .as_ref()
        .and_then(|j| j.get("acknowledged"))
        .and_then(Value::as_bool);
    if acknowledged != Some(true) {
        return Err(SetupError::ElasticsearchNotAcknowledged {
            method: request.method,
            path: request.path.clone(),
            body: truncate(body, 300),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn plan_installs_policy_then_component_then_index_templates() {
        let paths: Vec<_> = elasticsearch_plan(None)
            .into_iter()
            .map(|r| format!("{} {}", r.method, r.path))
            .collect();
        assert_eq!(
            paths,
            [
                "PUT /_ilm/policy/iaso-probe",
                "PUT /_component_template/iaso-mappings",
                "PUT /_component_template/iaso-settings",
                "PUT /_index_template/synthetics-iaso.checks",
                "PUT /_index_template/logs-iaso.jobs",
                "PUT /_index_template/iaso-checks",
                "PUT /_index_template/iaso-jobs",
            ]
        );
    }

    #[test]
    fn the_new_templates_outrank_the_built_in_logs_and_synthetics_templates() {
        // Elasticsearch's own logs@template (logs-*-*) and synthetics@template
        // (synthetics-*-*) have priority 100 (x-pack/plugin/core/template-resources).
        for r in elasticsearch_plan(None)
            .iter()
            .filter(|r| r.path.starts_with("/_index_template/"))
        {
            assert!(r.body["priority"].as_u64().unwrap() > 100, "{}", r.path);
        }
        let patterns: Vec<String> = elasticsearch_plan(None)
            .iter()
            .filter_map(|r| r.body["index_patterns"].as_array())
            .flatten()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        assert!(patterns.contains(&"synthetics-iaso.checks-*".to_owned()));
        assert!(patterns.contains(&"logs-iaso.jobs-*".to_owned()));
    }

    #[test]
    fn options_set_rollover_and_replicas() {
        let plan = elasticsearch_plan_with(&PlanOptions {
            delete_after: Some("10d".into()),
            rollover_max_age: Some("7d".into()),
            rollover_max_primary_shard_size: Some("10gb".into()),
            replicas: Some(0),
        });
        let rollover = plan[0]
            .body
            .pointer("/policy/phases/hot/actions/rollover")
            .unwrap();
        assert_eq!(
            rollover,
            &serde_json::json!({"max_age": "7d", "max_primary_shard_size": "10gb"})
        );
        let settings = plan[2].body.pointer("/template/settings").unwrap();
        assert_eq!(settings["index.number_of_replicas"], Value::from(0));
        let defaults = PlanOptions::from_config(&crate::config::ElasticsearchConfig::default());
        assert_eq!(defaults.rollover_max_age.as_deref(), Some("30d"));
        assert_eq!(
            defaults.rollover_max_primary_shard_size.as_deref(),
            Some("50gb")
        );
        assert_eq!(defaults.replicas, Some(1));
    }

    #[test]
    fn plan_keeps_the_policy_delete_age_unless_overridden() {
        let age = |plan: &[SetupRequest]| {
            plan[0]
                .body
                .pointer("/policy/phases/delete/min_age")
                .cloned()
        };
        assert_eq!(age(&elasticsearch_plan(None)), Some("30d".into()));
        let plan = elasticsearch_plan(Some("7d"));
        assert_eq!(age(&plan), Some("7d".into()));
        assert_eq!(
            plan[0]
                .body
                .pointer("/policy/phases/hot/actions/rollover/max_age"),
            Some(&Value::from("30d")),
            "only the delete age changes"
        );
    }

    #[test]
    fn every_file_under_config_elasticsearch_is_embedded_under_its_file_name() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/elasticsearch");
        for (dir, embedded) in [
            ("ilm", ILM_POLICIES),
            ("component_templates", COMPONENT_TEMPLATES),
            ("index_templates", INDEX_TEMPLATES),
        ] {
            let mut on_disk: Vec<String> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            on_disk.sort();
            let mut names: Vec<String> =
                embedded.iter().map(|(n, _)| format!("{n}.json")).collect();
            names.sort();
            assert_eq!(on_disk, names, "config/elasticsearch/{dir}");
            for (name, text) in embedded {
                let file =
                    std::fs::read_to_string(root.join(dir).join(format!("{name}.json"))).unwrap();
                assert_eq!(&file, text, "{dir}/{name}.json embedded under its own name");
            }
        }
    }

    fn put(path: &str) -> SetupRequest {
        SetupRequest {
            method: "PUT",
            path: path.into(),
            body: Value::Null,
        }
    }

    #[test]
    fn an_acknowledged_answer_is_accepted() {
        assert!(check_answer(&put("/_ilm/policy/x"), 200, r#"{"acknowledged":true}"#).is_ok());
    }

    #[test]
    fn a_2xx_without_acknowledged_true_is_an_error() {
        let err = check_answer(&put("/_ilm/policy/x"), 200, r#"{"acknowledged":false}"#)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            r#"elasticsearch did not acknowledge PUT /_ilm/policy/x: {"acknowledged":false}"#
        );
        assert!(check_answer(&put("/x"), 200, "").is_err());
    }

    #[test]
    fn an_error_answer_names_status_type_and_reason() {
        let body = r#"{"error":{"root_cause":[],"type":"illegal_argument_exception","reason":"index template [iaso-checks] specifies component templates [iaso-mappings] that do not exist"},"status":400}"#;
        let err = check_answer(&put("/_index_template/iaso-checks"), 400, body)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "elasticsearch answered 400 to PUT /_index_template/iaso-checks: illegal_argument_exception: index template [iaso-checks] specifies component templates [iaso-mappings] that do not exist"
        );
        let err = check_answer(&put("/x"), 503, "<html>bad gateway</html>")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "elasticsearch answered 503 to PUT /x: unknown: <html>bad gateway</html>"
        );
    }

    #[test]
    fn an_unknown_method_is_refused() {
        let request = SetupRequest {
            method: "PATCH",
            path: "/x".into(),
            body: Value::Null,
        };
        assert_eq!(
            method_of(&request).unwrap_err().to_string(),
            "unsupported method PATCH for /x"
        );
    }

    #[test]
    fn ilm_status_200_means_ilm_and_no_handler_means_the_data_stream_lifecycle() {
        assert_eq!(
            classify_ilm_status(200, r#"{"operation_mode":"RUNNING"}"#).unwrap(),
            Retention::Ilm
        );
        assert_eq!(classify_ilm_status(403, "{}").unwrap(), Retention::Ilm);
        // The real OSS node's answer, verbatim.
        let oss = r#"{"error":"no handler found for uri [/_ilm/status] and method [GET]"}"#;
        assert_eq!(
            classify_ilm_status(400, oss).unwrap(),
            Retention::DataStreamLifecycle {
                status: 400,
                answer: "no handler found for uri [/_ilm/status] and method [GET]".into()
            }
        );
        // What the real 8.14 node without x-pack answers once it has indices.
        let oss_405 = r#"{"error":"Incorrect HTTP method for uri [/_ilm/status] and method [GET], allowed: [POST]","status":405}"#;
        assert!(matches!(
            classify_ilm_status(405, oss_405).unwrap(),
            Retention::DataStreamLifecycle { status: 405, .. }
        ));
        let serverless = r#"{"error":{"type":"api_not_available_exception","reason":"Request for uri [/_ilm/status] with method [GET] exists but is not available when running in serverless mode"},"status":410}"#;
        assert!(matches!(
            classify_ilm_status(410, serverless).unwrap(),
            Retention::DataStreamLifecycle { status: 410, .. }
        ));
    }

    #[test]
    fn an_ilm_status_answer_that_says_nothing_about_ilm_is_an_error_naming_it() {
        let err = classify_ilm_status(
            503,
            r#"{"error":{"type":"cluster_block_exception","reason":"blocked"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "elasticsearch answered 503 to GET /_ilm/status: cannot tell whether the cluster has ILM: cluster_block_exception: blocked"
        );
        // A 400 from an API that exists (a bad request) is not "no ILM".
        assert!(classify_ilm_status(
            400,
            r#"{"error":{"type":"illegal_argument_exception","reason":"x"}}"#
        )
        .is_err());
    }

    #[test]
    fn without_ilm_drops_the_policy_and_gives_index_templates_the_delete_age_as_retention() {
        let plan = without_ilm(&elasticsearch_plan(Some("7d")));
        let paths: Vec<_> = plan.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/_component_template/iaso-mappings",
                "/_component_template/iaso-settings",
                "/_index_template/synthetics-iaso.checks",
                "/_index_template/logs-iaso.jobs",
                "/_index_template/iaso-checks",
                "/_index_template/iaso-jobs",
            ]
        );
        let settings = plan[1].body.pointer("/template/settings").unwrap();
        assert_eq!(settings.get("index.lifecycle.name"), None);
        assert_eq!(
            settings["index.number_of_shards"],
            Value::from(1),
            "other settings stay"
        );
        for template in &plan[2..] {
            assert_eq!(
                template.body.pointer("/template/lifecycle"),
                Some(&serde_json::json!({"data_retention": "7d"})),
                "{}",
                template.path
            );
            assert_eq!(
                template.body["composed_of"],
                serde_json::json!(["iaso-mappings", "iaso-settings"])
            );
        }
        assert_eq!(
            delete_after(&elasticsearch_plan(Some("7d"))).as_deref(),
            Some("7d")
        );
    }

    #[test]
    fn without_ilm_removes_nested_lifecycle_settings_too() {
        let plan = vec![SetupRequest {
            method: "PUT",
            path: "/_component_template/x".into(),
            body: serde_json::json!({"template": {"settings": {"index": {"lifecycle": {"name": "p"}, "number_of_shards": 1}}}}),
        }];
        assert_eq!(
            without_ilm(&plan)[0].body,
            serde_json::json!({"template": {"settings": {"index": {"number_of_shards": 1}}}})
        );
    }

    #[test]
    fn a_missing_api_answer_is_reported_as_a_missing_feature() {
        let body =
            r#"{"error":"no handler found for uri [/_ilm/policy/iaso-probe] and method [PUT]"}"#;
        let err = check_answer(&put("/_ilm/policy/iaso-probe"), 400, body)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "elasticsearch has no API for PUT /_ilm/policy/iaso-probe (it answered 400: no handler found for uri [/_ilm/policy/iaso-probe] and method [PUT]); this cluster lacks the feature the request needs"
        );
    }

    /// Field types of the OSS server and its modules. x-pack adds `wildcard`,
    /// `constant_keyword`, `version`, `unsigned_long`, …, which a cluster without x-pack (or a
    /// trimmed hosted one) refuses, so the templates must not need them.
    const CORE_FIELD_TYPES: &[&str] = &[
        "keyword",
        "text",
        "long",
        "integer",
        "short",
        "byte",
        "double",
        "float",
        "half_float",
        "scaled_float",
        "boolean",
        "date",
        "date_nanos",
        "ip",
        "object",
        "nested",
        "flattened",
        "match_only_text",
        "geo_point",
        "date_range",
    ];

    fn collect_types(v: &Value, path: &str, out: &mut Vec<(String, String)>) {
        if let Some(props) = v.get("properties").and_then(Value::as_object) {
            for (name, field) in props {
                collect_types(field, &format!("{path}{name}."), out);
            }
        }
        if let Some(fields) = v.get("fields").and_then(Value::as_object) {
            for (name, field) in fields {
                collect_types(field, &format!("{path}{name}."), out);
            }
        }
        if let Some(t) = v.get("type").and_then(Value::as_str) {
            out.push((path.trim_end_matches('.').to_owned(), t.to_owned()));
        }
    }

    #[test]
    fn without_x_pack_every_mapped_field_type_is_one_the_oss_build_has() {
        let mut types = Vec::new();
        let plan = elasticsearch_plan(None);
        let mut xpack = Vec::new();
        for r in &plan {
            if let Some(m) = r.body.pointer("/template/mappings") {
                collect_types(m, "", &mut xpack);
            }
        }
        assert!(
            xpack.contains(&("url.full".into(), "wildcard".into())),
            "ECS types with x-pack"
        );
        assert!(xpack.contains(&("data_stream.type".into(), "constant_keyword".into())));
        for r in without_xpack_types(&plan) {
            if let Some(m) = r.body.pointer("/template/mappings") {
                collect_types(m, "", &mut types);
            }
        }
        assert!(types.len() > 30, "the mappings were read: {types:?}");
        let foreign: Vec<_> = types
            .iter()
            .filter(|(_, t)| !CORE_FIELD_TYPES.contains(&t.as_str()))
            .collect();
        assert!(foreign.is_empty(), "x-pack-only field types: {foreign:?}");
        assert!(types.contains(&("url.full".into(), "keyword".into())));
    }

    #[test]
    fn a_refusal_for_a_missing_field_type_names_it_and_it_can_be_replaced() {
        let reason = "Failed to parse mapping: No handler for type [match_only_text] declared on field [message]";
        assert_eq!(missing_type(reason), Some("match_only_text"));
        assert_eq!(missing_type("other"), None);
        let mut body = elasticsearch_plan(None)[1].body.clone();
        assert!(replace_type(&mut body, "match_only_text", "text"));
        assert_eq!(
            body.pointer("/template/mappings/properties/error/properties/message/type"),
            Some(&Value::from("text"))
        );
        assert_eq!(
            body.pointer(
                "/template/mappings/properties/error/properties/message/fields/keyword/type"
            ),
            Some(&Value::from("keyword"))
        );
        assert!(
            !replace_type(&mut body, "match_only_text", "text"),
            "none left"
        );
    }

    #[test]
    fn x_pack_is_missing_only_when_its_api_is() {
        assert!(classify_xpack(200, r#"{"features":{}}"#));
        assert!(classify_xpack(401, "{}"));
        assert!(!classify_xpack(
            400,
            r#"{"error":"no handler found for uri [/_xpack] and method [GET]"}"#
        ));
        assert!(!classify_xpack(410, "{}"));
        // The real 8.14 OSS node, verbatim.
        assert!(!classify_xpack(
            400,
            r#"{"error":{"root_cause":[{"type":"invalid_index_name_exception","reason":"Invalid index name [_xpack], must not start with '_'.","index_uuid":"_na_","index":"_xpack"}],"type":"invalid_index_name_exception","reason":"Invalid index name [_xpack], must not start with '_'.","index_uuid":"_na_","index":"_xpack"},"status":400}"#
        ));
    }
}
