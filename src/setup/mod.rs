//! `iaso-probe setup`: installs what the prober needs outside itself, idempotently.
//!
//! - [`elasticsearch`]: the ILM policy, component templates and index templates of
//!   `config/elasticsearch/`, sent through the official client (`PUT` overwrites); on a cluster
//!   without ILM the templates carry a data stream lifecycle instead of the policy.
//! - [`kibana`]: the saved objects of `kibana/*.ndjson` (data views, Lens panels, dashboards),
//!   imported with `overwrite=true` when Kibana lacks them or has another version of them
//!   (edits made in Kibana survive a re-run), and the alerting rules.
//!
//! Every asset is embedded in the binary at build time, so a container needs no extra files, and
//! [`dry_run_lines`] shows exactly what would be sent.

pub mod elasticsearch;
pub mod kibana;

use serde::Serialize;

pub use self::elasticsearch::{
    elasticsearch_plan, elasticsearch_plan_with, install_elasticsearch,
    install_elasticsearch_reporting, Installed, PlanOptions, Retention,
};
pub use self::kibana::{
    alert_rules, import_kibana, install_rules, kibana_files, kibana_http_client, sync_kibana,
    wait_kibana_available, AlertRule, FileSync, KibanaTarget, RuleSync,
};

/// `text` cut to its first `max` characters (an ellipsis marks the cut): answers quoted in
/// errors stay one readable line.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// One request of the Elasticsearch plan: `PUT /_ilm/policy/iaso-probe` and its JSON body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetupRequest {
    /// HTTP method, upper case (`PUT`).
    pub method: &'static str,
    /// Path from the cluster root, with a leading `/`.
    pub path: String,
    /// Body sent as JSON.
    pub body: serde_json::Value,
}

/// What went wrong while installing. Messages name the request and what the server said, and
/// never carry a secret (credentials are never part of a path or of a server answer we quote).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The request did not get an answer (connection refused, timeout, TLS…).
    #[error("elasticsearch request {method} {path} failed: {message}")]
    ElasticsearchTransport {
        method: &'static str,
        path: String,
        message: String,
    },
    /// Elasticsearch answered with a non-2xx status.
    #[error("elasticsearch answered {status} to {method} {path}: {error_type}: {reason}")]
    ElasticsearchStatus {
        method: &'static str,
        path: String,
        status: u16,
        error_type: String,
        reason: String,
    },
    /// The cluster has no such API (400 "no handler found", 404/410, `api_not_available`): a
    /// feature this cluster lacks, not a bad request.
    #[error("elasticsearch has no API for {method} {path} (it answered {status}: {answer}); this cluster lacks the feature the request needs")]
    ElasticsearchMissingApi {
        method: &'static str,
        path: String,
        status: u16,
        answer: String,
    },
    /// Elasticsearch answered 2xx without `"acknowledged": true`.
    #[error("elasticsearch did not acknowledge {method} {path}: {body}")]
    ElasticsearchNotAcknowledged {
        method: &'static str,
        path: String,
        body: String,
    },
    /// A plan entry carries a method the client cannot send.
    #[error("unsupported method {method} for {path}")]
    UnsupportedMethod { method: &'static str, path: String },
    /// The Kibana URL cannot carry the API path (e.g. `mailto:`), or a space id is not a path
    /// segment.
    #[error("invalid kibana target {url}: {reason}")]
    KibanaTarget { url: String, reason: String },
    /// A saved-object file Kibana would refuse before reading it.
    #[error("kibana file {file} is not importable: {reason}")]
    KibanaFile { file: String, reason: String },
    /// The request did not get an answer.
    #[error("kibana request {method} {path} failed: {message}")]
    KibanaTransport {
        method: &'static str,
        path: String,
        message: String,
    },
    /// Kibana answered with an unexpected HTTP status.
    #[error("kibana answered {status} to {method} {path}: {message}")]
    KibanaStatus {
        method: &'static str,
        path: String,
        status: u16,
        message: String,
    },
    /// The import answered HTTP 200 with `"success": false` (or without `success`).
    #[error(
        "kibana import of {file} failed ({success_count} objects imported, {error_count} errors): {errors}"
    )]
    KibanaImport {
        file: String,
        success_count: u64,
        error_count: usize,
        /// `type/id: error.type` items, `; `-separated.
        errors: String,
    },
    /// Kibana did not report `available` before the deadline.
    #[error("kibana at {url} not available after {waited_secs}s: {last}")]
    KibanaUnavailable {
        url: String,
        waited_secs: u64,
        last: String,
    },
}

/// The lines `iaso-probe setup --dry-run` prints: one per Elasticsearch request (method, path,
/// compact JSON body), then, when a Kibana target is given, one per saved-object file import
/// (method, URL, headers, file name). Credentials appear only as `<redacted>`.
pub fn dry_run_lines(plan: &[SetupRequest], kibana: Option<&KibanaTarget>) -> Vec<String> {
    let mut lines: Vec<String> = plan
        .iter()
        .map(|r| format!("{} {} {}", r.method, r.path, r.body))
        .collect();
    if let Some(target) = kibana {
        let auth = match (&target.api_key, &target.username) {
            (Some(_), _) => " authorization: ApiKey <redacted>",
            (None, Some(_)) => " authorization: Basic <redacted>",
            (None, None) => "",
        };
        let url = match target.import_url() {
            Ok(url) => redact_url(url.as_str()),
            Err(e) => format!("<{e}>"),
        };
        for (name, _) in kibana_files() {
            lines.push(format!(
                "POST {url} kbn-xsrf: {}{auth} content-type: multipart/form-data file={name}",
                kibana::KBN_XSRF
            ));
        }
    }
    lines
}

/// The lines `setup --dry-run` prints for the alerting rules: the creation request of each
/// (method, URL, compact JSON body); when the rule exists, `setup` sends the update body with
/// `PUT` to the same URL instead.
pub(crate) fn rule_lines(target: &KibanaTarget, rules: &[AlertRule]) -> Vec<String> {
    rules
        .iter()
        .map(|r| {
            let url = match target.space_url(&format!("/api/alerting/rule/{}", r.id)) {
                Ok(url) => redact_url(url.as_str()),
                Err(e) => format!("<{e}>"),
            };
            format!(
                "POST {url} kbn-xsrf: {} (when it exists: PUT of name, tags, schedule and params, with the rule's own actions) {}",
                kibana::KBN_XSRF,
                r.create
            )
        })
        .collect()
}

/// Removes `user:password@` from every URL in `text`: error messages of the HTTP stack quote the
/// URL they called, and a URL may carry credentials.
pub(crate) fn redact_url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("://") {
        let (head, tail) = rest.split_at(i + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c == '/' || c == '?' || c == '#' || c.is_whitespace() || c == ')')
            .unwrap_or(tail.len());
        let authority = &tail[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("<redacted>@");
                out.push_str(&authority[at + 1..]);
            }
            None => out.push_str(authority),
        }
        rest = &tail[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_cuts_at_a_character_count_and_marks_the_cut() {
        for (text, max, want) in [
            ("short", 300, "short"),
            ("abcdef", 3, "abc…"),
            ("abc", 3, "abc"),
            ("éèêë", 2, "éè…"),
            ("", 0, ""),
        ] {
            assert_eq!(truncate(text, max), want, "{text:?} {max}");
        }
    }

    #[test]
    fn redact_url_removes_userinfo_only() {
        assert_eq!(
            redact_url("error sending request for url (http://elastic:s3cret@es:9200/_bulk)"),
            "error sending request for url (http://<redacted>@es:9200/_bulk)"
        );
        assert_eq!(redact_url("http://es:9200/x"), "http://es:9200/x");
        assert_eq!(redact_url("no url here"), "no url here");
        assert_eq!(
            redact_url("a https://u:p@h/x and http://h2 b"),
            "a https://<redacted>@h/x and http://h2 b"
        );
    }

    #[test]
    fn dry_run_prints_one_line_per_request_then_per_kibana_file() {
        let plan = elasticsearch_plan(None);
        let target = KibanaTarget {
            url: "http://kibana:5601".parse().unwrap(),
            username: Some("elastic".into()),
            password: Some("s3cret-password".into()),
            api_key: None,
            space: None,
        };
        let lines = dry_run_lines(&plan, Some(&target));
        assert_eq!(lines.len(), plan.len() + kibana_files().len());
        assert!(lines[0].starts_with("PUT /_ilm/policy/iaso-probe {\""));
        assert!(!lines[0].contains('\n'), "compact JSON body");
        let kibana_line = &lines[plan.len()];
        assert!(kibana_line.starts_with(
            "POST http://kibana:5601/api/saved_objects/_import?overwrite=true kbn-xsrf: true"
        ));
        assert!(kibana_line.contains("authorization: Basic <redacted>"));
        assert!(kibana_line.ends_with(&format!("file={}", kibana_files()[0].0)));
        assert!(lines.iter().all(|l| !l.contains("s3cret")));
        assert_eq!(dry_run_lines(&plan, None).len(), plan.len());
        let rules = alert_rules(&crate::config::AlertsConfig::default());
        let lines = rule_lines(&target, &rules);
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with(
            "POST http://kibana:5601/api/alerting/rule/iaso-monitor-down kbn-xsrf: true"
        ));
        assert!(lines[1].contains("esqlQuery"), "{}", lines[1]);
    }
}
