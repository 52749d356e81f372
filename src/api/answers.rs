//! What the portal's answers mean: pure functions from (HTTP status, body) to a typed
//! outcome, one per answer the prober reads. No I/O here, so every answer can be tested and
//! fuzzed as literal bytes; whatever the bytes, the result is a value or an [`ApiError`],
//! never a panic. Numbers from the portal are checked and clamped here, once.

use super::ApiError;
use crate::config::Secret;
use crate::config::{
    AuthEndpoint, ErrorMapping, HealthEndpoint, JobEndpoint, LaunchEndpoint, LivenessEndpoint,
};
use serde_json::Value;
use std::time::Duration;

/// Longest token lifetime believed: a longer one (`1e300`) is used as this (the token is
/// then renewed at 80 % of a day, and a 401 still forces a login).
pub const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

/// Shortest token lifetime believed (a positive lifetime below it is used as this).
pub const MIN_TOKEN_LIFETIME: Duration = Duration::from_secs(1);

/// Longest job id accepted as text (it goes into URLs and result documents).
pub const MAX_JOB_ID_LEN: usize = 256;

/// Largest elapsed time kept (ten years); `iaso.job.elapsed_s` is a `long` in Elasticsearch.
pub const MAX_ELAPSED_S: u64 = 10 * 365 * 24 * 3600;

/// A token from the auth endpoint.
#[derive(Clone)]
pub struct Token {
    pub value: Secret,
    /// The lifetime to plan renewal with (clamped to [`MAX_TOKEN_LIFETIME`]); None: unknown.
    pub expires_in: Option<Duration>,
    /// The announced lifetime in seconds when it was out of range and clamped (for the log).
    pub clamped_from: Option<f64>,
}

/// Health of the portal: the overall status and one entry per component.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthReport {
    pub overall: Option<String>,
    pub components: Vec<(String, String)>,
}

/// A launched job.
#[derive(Debug, Clone, PartialEq)]
pub struct Launched {
    pub job_id: String,
    pub status: Option<String>,
}

/// A job status answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct JobState {
    pub status: String,
    /// Percent complete, clamped to 0..=100.
    pub percent: Option<f64>,
    /// Elapsed seconds, clamped to [`MAX_ELAPSED_S`].
    pub elapsed_s: Option<u64>,
    pub phase: Option<String>,
    pub failure_reason: Option<String>,
}

/// Liveness: the configured HTTP status, then the answer's status field. Any other
/// non-2xx status is `http_status`, as for every other check; a 2xx that is not the
/// expected one is an `assertion`.
pub fn liveness(ep: &LivenessEndpoint, status: u16, body: &[u8]) -> Result<(), ApiError> {
    if status != ep.expect_http_status {
        if !(200..=299).contains(&status) {
            return Err(ApiError::HttpStatus {
                status,
                excerpt: excerpt(body),
            });
        }
        return Err(ApiError::Assertion(format!(
            "HTTP status {status}, expected {}",
            ep.expect_http_status
        )));
    }
    if ep.status_pointer.is_empty() && ep.errors.is_off() {
        return Ok(());
    }
    let v = parse_json(body)?;
    check_errors(&ep.errors, &v)?;
    if ep.status_pointer.is_empty() {
        return Ok(());
    }
    match at(&v, &ep.status_pointer).map(scalar_text) {
        Some(Some(s)) if s == ep.expect_status => Ok(()),
        Some(Some(s)) => Err(ApiError::Assertion(format!(
            "{} is {}, expected {}",
            ep.status_pointer,
            short(&s),
            ep.expect_status
        ))),
        _ => Err(ApiError::Decode(format!(
            "no {} in the answer",
            ep.status_pointer
        ))),
    }
}

/// Health: one entry per component, plus the overall status when configured. Without a
/// component list, the overall status alone (it must then be in the answer); with neither
/// pointer, the answer itself: `_overall` is healthy (the first of `healthy_values`).
pub fn health(ep: &HealthEndpoint, status: u16, body: &[u8]) -> Result<HealthReport, ApiError> {
    expect_2xx(status, body)?;
    let v = parse_json(body)?;
    check_errors(&ep.errors, &v)?;
    let overall = if ep.overall_pointer.is_empty() {
        None
    } else {
        at(&v, &ep.overall_pointer).and_then(scalar_text)
    };
    if ep.components_pointer.is_empty() {
        let overall = match overall {
            Some(s) => s,
            None if ep.overall_pointer.is_empty() => ep
                .healthy_values
                .first()
                .cloned()
                .unwrap_or_else(|| "healthy".into()),
            None => {
                return Err(ApiError::Decode(format!(
                    "no overall status at {}",
                    ep.overall_pointer
                )))
            }
        };
        return Ok(HealthReport {
            overall: Some(overall),
            components: Vec::new(),
        });
    }
    let list = at(&v, &ep.components_pointer)
        .and_then(Value::as_array)
        .ok_or_else(|| {
            ApiError::Decode(format!("no component array at {}", ep.components_pointer))
        })?;
    let mut components = Vec::with_capacity(list.len());
    for (i, c) in list.iter().enumerate() {
        let name = c
            .get(&ep.name_field)
            .and_then(scalar_text)
            .ok_or_else(|| ApiError::Decode(format!("component {i} has no `{}`", ep.name_field)))?;
        let st = c
            .get(&ep.status_field)
            .and_then(scalar_text)
            .ok_or_else(|| {
                ApiError::Decode(format!(
                    "component `{}` has no `{}`",
                    short(&name),
                    ep.status_field
                ))
            })?;
        components.push((name, st));
    }
    Ok(HealthReport {
        overall,
        components,
    })
}

/// Response time: any 2xx.
pub fn timed(status: u16, body: &[u8]) -> Result<(), ApiError> {
    expect_2xx(status, body)
}

/// Authentication: a non-empty token that can be sent in `token_header` as `token_format`
/// says, and its lifetime when the portal gives one.
pub fn login(
    ep: &AuthEndpoint,
    token_header: &str,
    token_format: &str,
    status: u16,
    body: &[u8],
) -> Result<Token, ApiError> {
    if status == 401 || status == 403 {
        return Err(ApiError::Unauthorized(status));
    }
    expect_2xx(status, body)?;
    let v = parse_json(body)?;
    if let Some(m) = portal_error(&ep.errors, &v) {
        return Err(ApiError::LoginRefused(m));
    }
    let token = at(&v, &ep.token_pointer)
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| ApiError::Decode(format!("no token at {}", ep.token_pointer)))?;
    if reqwest::header::HeaderValue::from_str(&token_format.replace("{token}", token)).is_err() {
        // Never the token itself in the message.
        return Err(ApiError::Config(format!(
            "the token at {} cannot be sent in header `{token_header}` (not a valid header \
             value: control characters or non-ASCII)",
            ep.token_pointer
        )));
    }
    let (expires_in, clamped_from) = if ep.expires_in_pointer.is_empty() {
        (None, None)
    } else {
        lifetime(&v, &ep.expires_in_pointer)?
    };
    Ok(Token {
        value: Secret::new(token),
        expires_in,
        clamped_from,
    })
}

/// The token lifetime at `ptr`: absent, null, zero or negative = unknown (the token is
/// renewed on a 401 only); a number or numeric string of seconds otherwise, clamped to
/// [`MAX_TOKEN_LIFETIME`]; anything else is `decode`.
fn lifetime(v: &Value, ptr: &str) -> Result<(Option<Duration>, Option<f64>), ApiError> {
    let x = match at(v, ptr) {
        None | Some(Value::Null) => return Ok((None, None)),
        Some(x) => x,
    };
    let secs = x
        .as_f64()
        .or_else(|| x.as_str().and_then(|s| s.trim().parse::<f64>().ok()));
    match secs {
        None => Err(ApiError::Decode(format!(
            "{ptr} is not a number of seconds"
        ))),
        Some(s) if s.is_nan() => Err(ApiError::Decode(format!(
            "{ptr} is not a number of seconds"
        ))),
        Some(s) if s <= 0.0 => Ok((None, None)),
        Some(s) if s > MAX_TOKEN_LIFETIME.as_secs_f64() => Ok((Some(MAX_TOKEN_LIFETIME), Some(s))),
        // `5e-324` would round to a zero Duration: a lifetime under a second counts as one.
        Some(s) if s < MIN_TOKEN_LIFETIME.as_secs_f64() => Ok((Some(MIN_TOKEN_LIFETIME), Some(s))),
        // In range: from_secs_f64 cannot panic for 1 <= s <= one day.
        Some(s) => Ok((Some(Duration::from_secs_f64(s)), None)),
    }
}

/// A launch (backup or restore): the job id (a string, or an integer that round-trips
/// exactly) and the launch status.
pub fn launch(ep: &LaunchEndpoint, status: u16, body: &[u8]) -> Result<Launched, ApiError> {
    expect_2xx(status, body)?;
    let v = parse_json(body)?;
    check_errors(&ep.errors, &v)?;
    let job_id = match at(&v, &ep.job_id_pointer) {
        None | Some(Value::Null) => {
            return Err(ApiError::Decode(format!(
                "no job id at {}",
                ep.job_id_pointer
            )))
        }
        Some(x) => job_id(x)
            .map_err(|why| ApiError::Decode(format!("job id at {}: {why}", ep.job_id_pointer)))?,
    };
    let status = if ep.status_pointer.is_empty() {
        None
    } else {
        at(&v, &ep.status_pointer).and_then(scalar_text)
    };
    Ok(Launched { job_id, status })
}

/// A job id as text: a non-empty string of at most [`MAX_JOB_ID_LEN`] bytes, or an integer
/// JSON parsed exactly (`123456789012345678901234567890` is read as a float by JSON
/// parsers and would come back as `1.2345678901234568e+29`: another job).
pub fn job_id(v: &Value) -> Result<String, String> {
    match v {
        Value::String(s) if s.trim().is_empty() => Err("empty".into()),
        Value::String(s) if s.len() > MAX_JOB_ID_LEN => {
            Err(format!("longer than {MAX_JOB_ID_LEN} bytes"))
        }
        Value::String(s) if s.chars().any(char::is_control) => {
            Err("contains control characters".into())
        }
        Value::String(s) => Ok(s.clone()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Ok(n.to_string()),
        Value::Number(n) => Err(format!(
            "{} is not an integer that can be read exactly (send ids as strings)",
            short(&n.to_string())
        )),
        Value::Bool(_) => Err("a boolean is not a job id".into()),
        Value::Array(_) | Value::Object(_) => Err("not a string or an integer".into()),
        Value::Null => Err("null".into()),
    }
}

/// A job status answer: the status word and, when configured, percent, elapsed seconds,
/// phase and failure reason (numbers clamped to their range).
pub fn job_status(ep: &JobEndpoint, status: u16, body: &[u8]) -> Result<JobState, ApiError> {
    expect_2xx(status, body)?;
    let v = parse_json(body)?;
    check_errors(&ep.errors, &v)?;
    let text = |p: &str| {
        if p.is_empty() {
            None
        } else {
            at(&v, p).and_then(scalar_text)
        }
    };
    let status = text(&ep.status_pointer)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| ApiError::Decode(format!("no status at {}", ep.status_pointer)))?;
    let num = |p: &str| {
        if p.is_empty() {
            None
        } else {
            at(&v, p)
                .and_then(|x| {
                    x.as_f64()
                        .or_else(|| x.as_str().and_then(|s| s.trim().parse().ok()))
                })
                .filter(|f: &f64| f.is_finite())
        }
    };
    Ok(JobState {
        status,
        percent: num(&ep.percent_pointer).map(|f| f.clamp(0.0, 100.0)),
        elapsed_s: num(&ep.elapsed_pointer).map(|f| (f.max(0.0) as u64).min(MAX_ELAPSED_S)),
        // An empty phase or reason (Commvault's `pendingReason: ""`) is no value.
        phase: text(&ep.phase_pointer).filter(|s| !s.is_empty()),
        failure_reason: text(&ep.failure_reason_pointer).filter(|s| !s.is_empty()),
    })
}

/// 2xx, or the failure the status means.
pub(crate) fn expect_2xx(status: u16, body: &[u8]) -> Result<(), ApiError> {
    match status {
        200..=299 => Ok(()),
        401 | 403 => Err(ApiError::Unauthorized(status)),
        _ => Err(ApiError::HttpStatus {
            status,
            excerpt: excerpt(body),
        }),
    }
}

/// A short, single-line excerpt of an error body for `error.message`.
fn excerpt(body: &[u8]) -> String {
    let s = String::from_utf8_lossy(&body[..body.len().min(200)]);
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// At most 100 characters of a value echoed in a message.
fn short(s: &str) -> String {
    match s.char_indices().nth(100) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// Start of the message of an answer that is not JSON (the client adds the content type).
const NOT_JSON: &str = "not JSON (";

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        let start: String = String::from_utf8_lossy(&body[..body.len().min(60)])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        let start = if body.is_empty() {
            "the body is empty".to_owned()
        } else if body.len() > 60 {
            format!("the body starts with `{start}…`")
        } else {
            format!("the body is `{start}`")
        };
        ApiError::Decode(format!("{NOT_JSON}{start}): {e}"))
    })
}

/// A "not JSON" failure with the answer's content type in it (an XML answer reads as
/// such: the portal may want `Accept: application/json`, see `api.headers`).
pub(crate) fn with_content_type(e: ApiError, content_type: Option<&str>) -> ApiError {
    match e {
        ApiError::Decode(m) if m.starts_with(NOT_JSON) => {
            let ct: String = content_type
                .unwrap_or("none")
                .chars()
                .filter(|c| !c.is_control())
                .take(100)
                .collect();
            ApiError::Decode(format!(
                "{NOT_JSON}content type `{ct}`, {}",
                &m[NOT_JSON.len()..]
            ))
        }
        other => other,
    }
}

/// `Portal` when the answer carries an error per `m`.
fn check_errors(m: &ErrorMapping, v: &Value) -> Result<(), ApiError> {
    match portal_error(m, v) {
        Some(msg) => Err(ApiError::Portal(msg)),
        None => Ok(()),
    }
}

/// The portal's error inside a 2xx answer, as `message (code N)`: the code at
/// `code_pointer` when present and not a success code, else a non-empty message at
/// `message_pointer` alone. None: no error (or nothing configured).
pub(crate) fn portal_error(m: &ErrorMapping, v: &Value) -> Option<String> {
    if m.is_off() {
        return None;
    }
    let at = |p: &str| {
        if p.is_empty() {
            None
        } else {
            at(v, p).filter(|x| !x.is_null())
        }
    };
    let message = at(&m.message_pointer)
        .map(|x| scalar_text(x).unwrap_or_else(|| x.to_string()))
        .map(|s| one_line(&s, 300))
        .filter(|s| !s.is_empty());
    match at(&m.code_pointer) {
        Some(c) => {
            let code = scalar_text(c).unwrap_or_else(|| c.to_string());
            if m.success_codes.iter().any(|s| s.trim() == code.trim()) {
                return None;
            }
            let code = one_line(&code, 50);
            Some(match message {
                Some(msg) => format!("{msg} (code {code})"),
                None => format!("error code {code} at {}", m.code_pointer),
            })
        }
        None => message,
    }
}

/// `s` on one line, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &flat[..i]),
        None => flat,
    }
}

/// A string, number or boolean as text (status words).
/// The value at a JSON pointer (RFC 6901), as `Value::pointer`, without its two string
/// allocations per token: pointers are read at every status poll.
fn at<'a>(v: &'a Value, pointer: &str) -> Option<&'a Value> {
    if pointer.is_empty() {
        return Some(v);
    }
    let rest = pointer.strip_prefix('/')?;
    rest.split('/').try_fold(v, |target, raw| {
        let token: std::borrow::Cow<str> = if raw.contains('~') {
            raw.replace("~1", "/").replace("~0", "~").into()
        } else {
            raw.into()
        };
        match target {
            Value::Object(map) => map.get(token.as_ref()),
            Value::Array(list) => array_index(&token).and_then(|i| list.get(i)),
            _ => None,
        }
    })
}

/// An array index token: digits without a leading `+` or a leading zero (as serde_json).
fn array_index(token: &str) -> Option<usize> {
    if token.starts_with('+') || (token.starts_with('0') && token.len() != 1) {
        return None;
    }
    token.parse().ok()
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ApiMapping;
    use serde_json::json;

    fn login_body(body: &str) -> Result<Token, ApiError> {
        let a = ApiMapping::default();
        login(
            &a.auth,
            &a.token_header,
            &a.token_format,
            200,
            body.as_bytes(),
        )
    }

    #[test]
    fn at_reads_a_pointer_as_serde_json_does() {
        let v = json!({"a": {"b/c": [1, {"d~e": "x"}], "": 2, "0": 3}, "l": [10, 20]});
        for p in [
            "",
            "/",
            "/a",
            "/a/b~1c",
            "/a/b~1c/1/d~0e",
            "/a/b~1c/01",
            "/a/b~1c/+1",
            "/a/b~1c/9",
            "/a/",
            "/a/0",
            "/l/0",
            "/l/1",
            "/l/-",
            "a",
            "/x/y",
            "/a/b~1c/0/z",
            "/a/b~01c",
        ] {
            assert_eq!(at(&v, p), v.pointer(p), "{p}");
        }
    }

    #[test]
    fn a_lifetime_of_1e300_or_1e19_seconds_is_clamped_to_a_day_and_5e_324_to_a_second() {
        for big in ["1e300", "1e19", "\"1e300\"", "\"inf\""] {
            let t = login_body(&format!(r#"{{"token":"t","expiresIn":{big}}}"#)).unwrap();
            assert_eq!(t.expires_in, Some(MAX_TOKEN_LIFETIME), "{big}");
            assert!(t.clamped_from.is_some(), "{big}");
        }
        let t = login_body(r#"{"token":"t","expiresIn":5e-324}"#).unwrap();
        assert_eq!(
            t.expires_in,
            Some(MIN_TOKEN_LIFETIME),
            "found by answers_fuzz"
        );
        let t = login_body(r#"{"token":"t","expiresIn":20}"#).unwrap();
        assert_eq!(
            (t.expires_in, t.clamped_from),
            (Some(Duration::from_secs(20)), None)
        );
    }

    #[test]
    fn a_lifetime_that_is_not_a_number_is_a_decode_error_and_zero_means_unknown() {
        for bad in ["true", "\"soon\"", "[1]", "{}", "\"NaN\""] {
            let e = login_body(&format!(r#"{{"token":"t","expiresIn":{bad}}}"#))
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"));
            assert!(
                matches!(&e, ApiError::Decode(m) if m.contains("/expiresIn")),
                "{bad}: {e}"
            );
        }
        for unknown in ["0", "-5", "null"] {
            let t = login_body(&format!(r#"{{"token":"t","expiresIn":{unknown}}}"#)).unwrap();
            assert_eq!(t.expires_in, None, "{unknown}");
        }
    }

    #[test]
    fn a_token_that_cannot_be_a_header_value_is_a_config_error_without_the_token() {
        let e = login_body(r#"{"token":"sec\nret","expiresIn":60}"#)
            .err()
            .unwrap();
        assert_eq!(e.error_type(), crate::model::ErrorType::Config);
        assert!(!e.to_string().contains("sec"), "{e}");
    }

    #[test]
    fn job_ids_are_strings_or_integers_that_round_trip_exactly() {
        assert_eq!(job_id(&json!(12345)), Ok("12345".into()));
        assert_eq!(job_id(&json!(-7)), Ok("-7".into()));
        assert_eq!(job_id(&json!("J1")), Ok("J1".into()));
        assert_eq!(job_id(&json!(u64::MAX)), Ok("18446744073709551615".into()));
        let big: Value = serde_json::from_str("123456789012345678901234567890").unwrap();
        for bad in [
            big,
            json!(true),
            json!(1.5e300),
            json!(1.5),
            json!(""),
            json!([1]),
            json!("a".repeat(MAX_JOB_ID_LEN + 1)),
        ] {
            assert!(job_id(&bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn a_launch_with_an_inexact_job_id_is_a_decode_result() {
        let a = ApiMapping::default();
        for body in [
            r#"{"jobId":123456789012345678901234567890}"#,
            r#"{"jobId":true}"#,
            r#"{"jobId":1.5e300}"#,
        ] {
            let e = launch(&a.backup, 200, body.as_bytes()).unwrap_err();
            assert!(
                matches!(&e, ApiError::Decode(m) if m.contains("job id at /jobId")),
                "{body}: {e}"
            );
        }
    }

    #[test]
    fn percents_and_elapsed_times_are_clamped_to_their_range() {
        let a = ApiMapping::default();
        let s = job_status(
            &a.job_status,
            200,
            br#"{"status":"Running","percentComplete":1e300,"elapsedSeconds":1e300}"#,
        )
        .unwrap();
        assert_eq!((s.percent, s.elapsed_s), (Some(100.0), Some(MAX_ELAPSED_S)));
        let s = job_status(
            &a.job_status,
            200,
            br#"{"status":"Running","percentComplete":"NaN","elapsedSeconds":-3}"#,
        )
        .unwrap();
        assert_eq!((s.percent, s.elapsed_s), (None, Some(0)));
    }

    #[test]
    fn liveness_5xx_is_http_status_like_every_other_check() {
        let a = ApiMapping::default();
        let e = liveness(&a.liveness, 503, b"down").unwrap_err();
        assert_eq!(e.error_type(), crate::model::ErrorType::HttpStatus);
        let e = liveness(&a.liveness, 204, b"").unwrap_err();
        assert_eq!(e.error_type(), crate::model::ErrorType::Assertion);
    }

    #[test]
    fn non_2xx_answers_are_classified() {
        assert_eq!(expect_2xx(401, b""), Err(ApiError::Unauthorized(401)));
        assert!(matches!(
            expect_2xx(503, b"down\n  now"),
            Err(ApiError::HttpStatus { status: 503, ref excerpt }) if excerpt == "down now"
        ));
    }

    #[test]
    fn an_xml_answer_says_it_is_not_json_with_its_content_type_and_first_bytes() {
        let a = ApiMapping::default();
        let e = launch(&a.backup, 200, b"<?xml version=\"1.0\"?><App_Resp/>").unwrap_err();
        let e = with_content_type(e, Some("application/xml"));
        let m = e.to_string();
        assert!(
            m.contains("not JSON (content type `application/xml`, the body is `<?xml version")
                && m.contains("line 1 column 1"),
            "{m}"
        );
        let e = with_content_type(job_status(&a.job_status, 200, b"").unwrap_err(), None);
        assert!(
            e.to_string()
                .contains("content type `none`, the body is empty"),
            "{e}"
        );
    }

    fn cv_errors() -> ErrorMapping {
        ErrorMapping {
            code_pointer: "/errorCode".into(),
            message_pointer: "/errorMessage".into(),
            success_codes: vec!["0".into()],
        }
    }

    #[test]
    fn an_error_inside_a_200_is_the_portals_message_and_code() {
        let mut ep = ApiMapping::default().backup;
        ep.errors = cv_errors();
        ep.job_id_pointer = "/jobIds/0".into();
        let e = launch(
            &ep,
            200,
            br#"{"errorCode": 2, "errorMessage": "Subclient not found"}"#,
        )
        .unwrap_err();
        assert_eq!(e, ApiError::Portal("Subclient not found (code 2)".into()));
        assert_eq!(e.error_type(), crate::model::ErrorType::ApiError);
        // A success code, or no code and no message, is no error.
        for ok in [
            r#"{"errorCode": 0, "jobIds": ["7"]}"#,
            r#"{"taskId": 1, "jobIds": ["7"]}"#,
            r#"{"errorCode": "0", "errorMessage": "", "jobIds": ["7"]}"#,
        ] {
            assert_eq!(launch(&ep, 200, ok.as_bytes()).unwrap().job_id, "7", "{ok}");
        }
        // A message without a code is an error; a code without a message names the pointer.
        let e = launch(&ep, 200, br#"{"errorMessage": "no\nway"}"#).unwrap_err();
        assert_eq!(e, ApiError::Portal("no way".into()));
        let e = launch(&ep, 200, br#"{"errorCode": 9}"#).unwrap_err();
        assert_eq!(e, ApiError::Portal("error code 9 at /errorCode".into()));
    }

    #[test]
    fn a_login_refused_inside_a_200_is_auth_with_the_portals_message() {
        let mut a = ApiMapping::default();
        a.auth.errors = ErrorMapping {
            code_pointer: "/errList/0/errorCode".into(),
            message_pointer: "/errList/0/errLogMessage".into(),
            success_codes: vec!["0".into()],
        };
        let body = br#"{"errList": [{"errorCode": 1116, "errLogMessage": "Invalid Username or Password"}]}"#;
        let e = login(&a.auth, &a.token_header, &a.token_format, 200, body)
            .err()
            .unwrap();
        assert_eq!(e.error_type(), crate::model::ErrorType::Auth);
        assert_eq!(
            e.to_string(),
            "authentication refused: Invalid Username or Password (code 1116)"
        );
        let ok = br#"{"errList": [], "token": "QSDK 1a2b", "expiresIn": 60}"#;
        assert!(login(&a.auth, &a.token_header, &a.token_format, 200, ok).is_ok());
    }

    #[test]
    fn a_health_check_without_components_reports_the_overall_status_or_the_answer() {
        let mut ep = ApiMapping::default().health;
        ep.components_pointer = String::new();
        let r = health(&ep, 200, br#"{"status": "unhealthy"}"#).unwrap();
        assert_eq!(
            (r.overall.as_deref(), r.components.len()),
            (Some("unhealthy"), 0)
        );
        assert!(
            health(&ep, 200, br#"{}"#).is_err(),
            "overall pointer given but absent"
        );
        ep.overall_pointer = String::new();
        let r = health(&ep, 200, br#"{"commcell": {"commCellName": "cs"}}"#).unwrap();
        assert_eq!(r.overall.as_deref(), Some("healthy"));
        ep.errors = cv_errors();
        let e = health(
            &ep,
            200,
            br#"{"errorCode": 5, "errorMessage": "Access denied"}"#,
        );
        assert_eq!(e, Err(ApiError::Portal("Access denied (code 5)".into())));
    }

    #[test]
    fn status_words_may_be_numbers() {
        assert_eq!(scalar_text(&json!(200)), Some("200".into()));
        assert_eq!(scalar_text(&json!(null)), None);
    }
}
