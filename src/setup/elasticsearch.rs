//! Elasticsearch side of `setup`: the ILM policy, component templates and index templates of
//! `config/elasticsearch/`, embedded at build time and sent with `PUT` (which overwrites, so
//! running setup twice is harmless).

use elasticsearch::http::headers::HeaderMap;
use elasticsearch::http::request::JsonBody;
use elasticsearch::http::Method;
use elasticsearch::Elasticsearch;
use serde_json::Value;

use super::{redact_url, SetupError, SetupRequest};

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

/// Index templates; they name the component templates above, which must exist first.
const INDEX_TEMPLATES: &[(&str, &str)] = &[
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

/// The requests that install everything, in dependency order: ILM policy, component templates,
/// index templates. `ilm_delete_after` (an Elasticsearch time value such as `"30d"`) replaces
/// the `min_age` of the policy's delete phase when given.
pub fn elasticsearch_plan(ilm_delete_after: Option<&str>) -> Vec<SetupRequest> {
    let mut plan = Vec::new();
    for (name, text) in ILM_POLICIES {
        let mut body = parse_asset("ilm policy", name, text);
        if let Some(age) = ilm_delete_after {
            if let Some(delete) = body.pointer_mut("/policy/phases/delete") {
                delete["min_age"] = Value::String(age.to_owned());
            }
        }
        plan.push(SetupRequest {
            method: "PUT",
            path: format!("/_ilm/policy/{name}"),
            body,
        });
    }
    for (name, text) in COMPONENT_TEMPLATES {
        plan.push(SetupRequest {
            method: "PUT",
            path: format!("/_component_template/{name}"),
            body: parse_asset("component template", name, text),
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

/// Sends the plan in order through the official client and stops at the first failure.
/// `send()` returns `Ok` for 4xx/5xx answers, so the status is checked here, and a 2xx answer
/// must carry `"acknowledged": true`. Returns the number of requests applied.
pub async fn install_elasticsearch(
    client: &Elasticsearch,
    plan: &[SetupRequest],
) -> Result<usize, SetupError> {
    for request in plan {
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
        check_answer(request, status, &text)?;
        tracing::info!(method = request.method, path = %request.path, "elasticsearch resource installed");
    }
    Ok(plan.len())
}

/// Judges one answer: 2xx with `"acknowledged": true`, or an error naming the ES error type and
/// reason.
pub(crate) fn check_answer(
    request: &SetupRequest,
    status: u16,
    body: &str,
) -> Result<(), SetupError> {
    let json: Option<Value> = serde_json::from_str(body).ok();
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

fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
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
                "PUT /_index_template/iaso-checks",
                "PUT /_index_template/iaso-jobs",
            ]
        );
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
            Some(&Value::from("1d")),
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
}
