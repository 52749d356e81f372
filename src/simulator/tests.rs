//! Tests of the simulator over HTTP (one per behaviour of the portal it imitates).
use super::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn quiet() -> SimulatorConfig {
    SimulatorConfig {
        latency_ms: RangeMs::new(0, 0),
        job_duration_ms: RangeMs::new(5, 10),
        job_failure_ratio: 0.0,
        job_warning_ratio: 0.0,
        ..SimulatorConfig::default()
    }
}

fn start(cfg: SimulatorConfig) -> SimulatorHandle {
    spawn(cfg, "127.0.0.1:0".parse().unwrap()).expect("simulator starts")
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let res = req.send().await.expect("request answered");
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let text = res.text().await.unwrap();
    Answer {
        status,
        headers,
        text,
    }
}

/// The reference API, as a prober would call it.
struct Reference {
    http: reqwest::Client,
    base: String,
}

impl Reference {
    fn new(sim: &SimulatorHandle) -> Self {
        Self {
            http: client(),
            base: sim.base_url(),
        }
    }

    async fn get(&self, path: &str) -> Answer {
        send(self.http.get(format!("{}{path}", self.base))).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        send(req).await
    }

    async fn login(&self) -> String {
        let a = self
            .post(
                "/api/v1/auth/token",
                None,
                json!({"username": "probe", "password": "probe-secret"}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json()["token"].as_str().unwrap().to_owned()
    }

    async fn backup(&self, token: &str, host: &str) -> String {
        let a = self
            .post(
                "/api/v1/backups",
                Some(token),
                json!({"hostname": host, "backupLevel": "FULL"}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json()["jobId"].as_str().unwrap().to_owned()
    }

    async fn status(&self, token: &str, job_id: &str, host: &str) -> Answer {
        self.post(
            "/api/v1/jobs/status",
            Some(token),
            json!({"jobId": job_id, "hostname": host}),
        )
        .await
    }

    /// Polls every few ms until the job is terminal; returns every answer.
    async fn poll_to_end(&self, token: &str, job_id: &str, host: &str) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut seen = Vec::new();
        loop {
            let a = self.status(token, job_id, host).await;
            assert_eq!(a.status, 200, "{}", a.text);
            let body = a.json();
            let status = body["status"].as_str().unwrap().to_owned();
            seen.push(body);
            if !["Pending", "Running"].contains(&status.as_str()) {
                return seen;
            }
            assert!(Instant::now() < deadline, "job {job_id} never ended");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

#[tokio::test]
async fn alive_answers_status_code_200() {
    let sim = start(quiet());
    let api = Reference::new(&sim);
    let a = api.get("/api/v1/alive").await;
    assert_eq!(a.status, 200);
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(a.json(), json!({"statusCode": 200, "message": "alive"}));
    let alive = sim.counters().endpoint("alive");
    assert_eq!((alive.requests, alive.ok_2xx), (1, 1));
    sim.stop();
}

#[tokio::test]
async fn health_lists_every_component_and_is_unhealthy_if_one_is() {
    let sim = start(quiet());
    let a = Reference::new(&sim).get("/api/v1/health").await;
    let body = a.json();
    assert_eq!(body["status"], "healthy");
    let names: Vec<&str> = body["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "commserve",
            "media-agent",
            "index-server",
            "web-console",
            "database"
        ]
    );
    assert!(body["services"]
        .as_array()
        .unwrap()
        .iter()
        .all(|s| s["status"] == "healthy"));
    sim.stop();

    let sim = start(SimulatorConfig {
        unhealthy_ratio: 1.0,
        components: vec!["commserve".to_owned()],
        ..quiet()
    });
    let body = Reference::new(&sim).get("/api/v1/health").await.json();
    assert_eq!(
        body,
        json!({"status": "unhealthy", "services": [{"name": "commserve", "status": "unhealthy"}]})
    );
}

#[tokio::test]
async fn login_gives_a_token_with_its_lifetime_in_seconds() {
    let sim = start(quiet());
    let api = Reference::new(&sim);
    let a = api
        .post(
            "/api/v1/auth/token",
            None,
            json!({"username": "probe", "password": "probe-secret"}),
        )
        .await;
    let body = a.json();
    assert_eq!(
        (body["status"].as_str(), body["expiresIn"].as_u64()),
        (Some("OK"), Some(3_600))
    );
    assert_eq!(body["token"].as_str().unwrap().len(), 32);
    let c = sim.counters();
    assert_eq!((c.logins_ok, c.tokens_issued), (1, 1));
}

#[tokio::test]
async fn wrong_password_gets_401_and_counts_a_failed_login() {
    let sim = start(quiet());
    let api = Reference::new(&sim);
    let a = api
        .post(
            "/api/v1/auth/token",
            None,
            json!({"username": "probe", "password": "nope"}),
        )
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.json(),
        json!({"status": "KO", "message": "invalid credentials"})
    );
    let c = sim.counters();
    assert_eq!((c.logins_ok, c.logins_failed, c.tokens_issued), (0, 1, 0));
    assert_eq!(c.endpoint("auth").unauthorized_401, 1);
}

#[tokio::test]
async fn malformed_login_body_gets_400() {
    let sim = start(quiet());
    let api = Reference::new(&sim);
    let a = send(
        api.http
            .post(format!("{}/api/v1/auth/token", api.base))
            .body("{user"),
    )
    .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["status"], "KO");
    let c = sim.counters();
    assert_eq!((c.logins_failed, c.endpoint("auth").client_4xx), (0, 1));
}

#[tokio::test]
async fn missing_token_is_rejected_with_401() {
    let sim = start(quiet());
    let api = Reference::new(&sim);
    let a = api
        .post(
            "/api/v1/backups",
            None,
            json!({"hostname": "h", "backupLevel": "FULL"}),
        )
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.json(),
        json!({"status": "KO", "message": "invalid or expired token"})
    );
    let a = api
        .post("/api/v1/restores", Some("made-up"), json!({}))
        .await;
    assert_eq!(a.status, 401);
    let c = sim.counters();
    assert_eq!(
        c.endpoint("backups").unauthorized_401 + c.endpoint("restores").unauthorized_401,
        2
    );
    assert_eq!(c.backups_launched, 0);
}

#[tokio::test]
async fn expired_token_is_rejected_with_401() {
    let sim = start(SimulatorConfig {
        token_ttl_ms: 20,
        ..quiet()
    });
    let api = Reference::new(&sim);
    let token = api.login().await;
    // Token expiry is the point here: wait out the 20 ms lifetime.
    tokio::time::sleep(Duration::from_millis(40)).await;
    let a = api
        .post(
            "/api/v1/backups",
            Some(&token),
            json!({"hostname": "h", "backupLevel": "FULL"}),
        )
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(sim.counters().endpoint("backups").unauthorized_401, 1);
}

#[tokio::test]
async fn expire_tokens_invalidates_every_issued_token() {
    let sim = start(quiet());
    let api = Reference::new(&sim);
    let (first, second) = (api.login().await, api.login().await);
    api.backup(&first, "h").await;
    sim.expire_tokens();
    for token in [&first, &second] {
        let a = api.status(token, "J1", "h").await;
        assert_eq!(a.status, 401);
    }
    let fresh = api.login().await;
    assert_eq!(api.status(&fresh, "J1", "h").await.status, 200);
}

#[tokio::test]
async fn backup_level_must_be_known_and_hostname_present() {
    let sim = start(quiet());
    let api = Reference::new(&sim);
    let token = api.login().await;
    let a = api
        .post(
            "/api/v1/backups",
            Some(&token),
            json!({"hostname": "h", "backupLevel": "WEEKLY"}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["status"], "KO");
    assert!(a.json()["message"]
        .as_str()
        .unwrap()
        .contains("backupLevel"));
    let a = api
        .post(
            "/api/v1/backups",
            Some(&token),
            json!({"backupLevel": "FULL"}),
        )
        .await;
    assert_eq!(a.status, 400);
    assert_eq!(a.json()["message"], "hostname is required");
    for level in BACKUP_LEVELS {
        let a = api
            .post(
                "/api/v1/backups",
                Some(&token),
                json!({"hostname": "h", "backupLevel": level}),
            )
            .await;
        assert_eq!(a.json()["status"], "started");
    }
    let c = sim.counters();
    assert_eq!(
        (c.backups_launched, c.endpoint("backups").client_4xx),
        (4, 2)
    );
}

#[tokio::test]
async fn job_runs_from_pending_to_a_terminal_status() {
    // Long enough that the first poll lands in the Pending tenth (200 ms), even on a busy machine.
    let sim = start(SimulatorConfig {
        job_duration_ms: RangeMs::new(2_000, 2_000),
        ..quiet()
    });
    let api = Reference::new(&sim);
    let token = api.login().await;
    let job_id = api.backup(&token, "web-01").await;
    assert_eq!(job_id, "J1");
    let seen = api.poll_to_end(&token, &job_id, "web-01").await;
    assert_eq!(seen[0]["status"], "Pending");
    assert!(seen.iter().any(|s| s["status"] == "Running"));
    let last = seen.last().unwrap();
    assert_eq!(
        *last,
        json!({"jobId": "J1", "status": "Completed", "percentComplete": 100, "elapsedSeconds": 2,
               "phase": "Archive Index", "failureReason": null})
    );
    let percents: Vec<u64> = seen
        .iter()
        .map(|s| s["percentComplete"].as_u64().unwrap())
        .collect();
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "{percents:?}");
    // Sticky: later polls keep answering the terminal status.
    assert_eq!(api.status(&token, &job_id, "web-01").await.json(), *last);
    let c = sim.counters();
    assert_eq!((c.status_changes_served, c.jobs_terminal_served), (3, 1));
    assert_eq!(c.endpoint("job_status").ok_2xx, seen.len() as u64 + 1);
}

#[tokio::test]
async fn failed_job_ends_with_a_failure_reason() {
    let sim = start(SimulatorConfig {
        job_failure_ratio: 1.0,
        ..quiet()
    });
    let api = Reference::new(&sim);
    let token = api.login().await;
    let job_id = api.backup(&token, "h").await;
    let last = api.poll_to_end(&token, &job_id, "h").await.pop().unwrap();
    assert_eq!(last["status"], "Failed");
    assert!(
        last["failureReason"]
            .as_str()
            .is_some_and(|r| !r.is_empty()),
        "{last}"
    );
    assert!(last["percentComplete"].as_u64().unwrap() < 100);
}

#[tokio::test]
async fn job_that_fails_to_start_is_failed_to_start_at_the_first_poll() {
    let sim = start(SimulatorConfig {
        job_fail_to_start_ratio: 1.0,
        ..quiet()
    });
    let api = Reference::new(&sim);
    let token = api.login().await;
    let job_id = api.backup(&token, "h").await;
    let body = api.status(&token, &job_id, "h").await.json();
    assert_eq!(
        (body["status"].as_str(), body["elapsedSeconds"].as_u64()),
        (Some("Failed to Start"), Some(0))
    );
    assert_eq!(sim.counters().jobs_terminal_served, 1);
}

#[tokio::test]
async fn restore_runs_in_the_restore_phase_to_completed() {
    let sim = start(SimulatorConfig {
        job_warning_ratio: 1.0,
        ..quiet()
    });
    let api = Reference::new(&sim);
    let token = api.login().await;
    let body = json!({"hostname": "db-1", "fileName": "a.txt", "sourcePath": "/data", "destinationPath": "/tmp"});
    let a = api.post("/api/v1/restores", Some(&token), body).await;
    assert_eq!(a.json()["status"], "started");
    let job_id = a.json()["jobId"].as_str().unwrap().to_owned();
    let seen = api.poll_to_end(&token, &job_id, "db-1").await;
    assert!(seen.iter().all(|s| s["phase"] == "Restore"));
    assert_eq!(
        seen.last().unwrap()["status"],
        "Completed w/ one or more warnings"
    );
    assert_eq!(sim.counters().restores_launched, 1);
}

#[tokio::test]
async fn unknown_job_gets_404() {
    let sim = start(quiet());
    let api = Reference::new(&sim);
    let token = api.login().await;
    let a = api.status(&token, "J404", "h").await;
    assert_eq!(a.status, 404);
    assert_eq!(a.json(), json!({"status": "KO", "message": "unknown job"}));
}

#[tokio::test]
async fn job_outcome_does_not_depend_on_launch_order() {
    let cfg = SimulatorConfig {
        job_duration_ms: RangeMs::new(5, 15),
        job_failure_ratio: 0.4,
        job_warning_ratio: 0.3,
        ..quiet()
    };
    let hosts = ["a", "b", "c"];
    let mut outcomes = Vec::new();
    for order in [[0, 1, 2, 0, 1, 2], [2, 2, 1, 0, 0, 1]] {
        let sim = start(cfg.clone());
        let api = Reference::new(&sim);
        let token = api.login().await;
        let mut jobs = Vec::new();
        for i in order {
            jobs.push((hosts[i], api.backup(&token, hosts[i]).await));
        }
        // Launches of the same host keep their order; compare (host, n-th) → final answer.
        let mut finals = Vec::new();
        for (host, id) in &jobs {
            let mut last = api.poll_to_end(&token, id, host).await.pop().unwrap();
            last.as_object_mut().unwrap().remove("jobId");
            finals.push((host.to_string(), last));
        }
        finals.sort_by(|a, b| a.0.cmp(&b.0));
        outcomes.push(finals);
        sim.stop();
    }
    assert_eq!(outcomes[0], outcomes[1]);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let sim = start(SimulatorConfig {
        rate_limit_per_sec: Some(1),
        rate_limit_burst: 2,
        ..quiet()
    });
    let api = Reference::new(&sim);
    let statuses = [
        api.get("/api/v1/alive").await.status,
        api.get("/api/v1/alive").await.status,
    ];
    assert_eq!(statuses, [200, 200]);
    let a = api.get("/api/v1/alive").await;
    assert_eq!(a.status, 429);
    assert_eq!(a.headers["retry-after"], "1");
    assert_eq!(a.headers["content-type"], "application/json");
    assert_eq!(a.json(), json!({"status": "KO", "message": "rate limited"}));
    let alive = sim.counters().endpoint("alive");
    assert_eq!(
        (
            alive.requests,
            alive.ok_2xx,
            alive.rate_limited_429,
            alive.client_4xx
        ),
        (3, 2, 1, 1)
    );
}

#[tokio::test]
async fn malformed_fault_answers_200_with_a_body_that_is_not_json() {
    let mut cfg = quiet();
    cfg.endpoint_faults.insert(
        "alive".to_owned(),
        FaultConfig {
            malformed_ratio: 1.0,
            ..FaultConfig::default()
        },
    );
    let sim = start(cfg);
    let api = Reference::new(&sim);
    let a = api.get("/api/v1/alive").await;
    assert_eq!(a.status, 200);
    assert!(serde_json::from_str::<Value>(&a.text).is_err());
    assert_eq!(api.get("/api/v1/health").await.json()["status"], "healthy");
    let c = sim.counters();
    assert_eq!(
        (
            c.endpoint("alive").malformed,
            c.endpoint("health").malformed
        ),
        (1, 0)
    );
}

#[tokio::test]
async fn error_fault_answers_5xx() {
    let mut cfg = quiet();
    cfg.faults.error_5xx_ratio = 1.0;
    let sim = start(cfg);
    let a = Reference::new(&sim).get("/api/v1/alive").await;
    assert!([500, 502, 503].contains(&a.status), "{}", a.status);
    assert_eq!(a.json()["status"], "KO");
    assert_eq!(sim.counters().endpoint("alive").server_5xx, 1);
}

#[tokio::test]
async fn timeout_fault_hangs_past_the_client_timeout() {
    let mut cfg = quiet();
    cfg.faults = FaultConfig {
        timeout_ratio: 1.0,
        hang_ms: 5_000,
        ..FaultConfig::default()
    };
    let sim = start(cfg);
    let http = client();
    let err = http
        .get(format!("{}/api/v1/alive", sim.base_url()))
        .timeout(Duration::from_millis(100))
        .send()
        .await
        .expect_err("the request hangs");
    assert!(err.is_timeout(), "{err}");
    assert_eq!(sim.counters().endpoint("alive").timeouts, 1);
    let started = Instant::now();
    sim.stop();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stop waited {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let sim = start(SimulatorConfig {
        latency_ms: RangeMs::new(50, 60),
        ..quiet()
    });
    let api = Reference::new(&sim);
    let started = Instant::now();
    api.get("/api/v1/alive").await;
    assert!(
        started.elapsed() >= Duration::from_millis(50),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn counters_are_served_as_json() {
    let sim = start(quiet());
    let api = Reference::new(&sim);
    api.get("/api/v1/alive").await;
    api.get("/nowhere").await;
    let served: CountersSnapshot =
        serde_json::from_str(&api.get(COUNTERS_PATH).await.text).unwrap();
    assert_eq!(served, sim.counters());
    assert_eq!(served.endpoint("other").requests, 1);
    assert_eq!(served.request_offsets_ms.len(), 2);
    assert_eq!(served.max_requests_in_window(60_000), 2);
}

/// The alt dialect, as a prober configured for it would call it.
struct Alt {
    http: reqwest::Client,
    base: String,
}

impl Alt {
    fn new(sim: &SimulatorHandle) -> Self {
        Self {
            http: client(),
            base: sim.base_url(),
        }
    }

    async fn get(&self, path: &str, token: Option<&str>) -> Answer {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            req = req.header("X-Auth-Token", token);
        }
        send(req).await
    }

    async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(token) = token {
            req = req.header("X-Auth-Token", token);
        }
        send(req).await
    }

    async fn login(&self) -> String {
        let a = self
            .post(
                "/rest/login",
                None,
                json!({"user": "probe", "pass": "probe-secret"}),
            )
            .await;
        assert_eq!(a.status, 200, "{}", a.text);
        a.json()["access"]["token"].as_str().unwrap().to_owned()
    }
}

fn alt() -> SimulatorConfig {
    SimulatorConfig {
        dialect: Dialect::Alt,
        ..quiet()
    }
}

#[tokio::test]
async fn alt_dialect_serves_numeric_job_ids() {
    let sim = start(alt());
    let api = Alt::new(&sim);
    let token = api.login().await;
    let a = api
        .post(
            "/rest/hosts/web-01/backup",
            Some(&token),
            json!({"level": "INCREMENTAL"}),
        )
        .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(a.json(), json!({"result": {"id": 1}}));
    let a = api
        .post(
            "/rest/hosts/web-01/restore",
            Some(&token),
            json!({"file": "f", "from": "/a", "to": "/b"}),
        )
        .await;
    assert_eq!(a.json(), json!({"result": {"id": 2}}));
    let deadline = Instant::now() + Duration::from_secs(10);
    let last = loop {
        let job = api.get("/rest/jobs/1", Some(&token)).await.json()["job"].clone();
        if !["Pending", "Running"].contains(&job["state"].as_str().unwrap()) {
            break job;
        }
        assert!(Instant::now() < deadline, "job 1 never ended");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert_eq!(
        last,
        json!({"state": "Completed", "progress": 100, "elapsed": 0, "stage": "Archive Index", "reason": null})
    );
    let c = sim.counters();
    assert_eq!(
        (
            c.backups_launched,
            c.restores_launched,
            c.jobs_terminal_served
        ),
        (1, 1, 1)
    );
}

#[tokio::test]
async fn alt_ping_and_status_have_their_own_shapes() {
    let mut cfg = alt();
    cfg.components = vec!["commserve".to_owned(), "database".to_owned()];
    let sim = start(cfg);
    let api = Alt::new(&sim);
    assert_eq!(
        api.get("/rest/ping", None).await.json(),
        json!({"code": 200})
    );
    assert_eq!(
        api.get("/rest/status", None).await.json(),
        json!({"overall": "OK", "components": [{"id": "commserve", "state": "UP"}, {"id": "database", "state": "UP"}]})
    );
    assert_eq!(api.get("/api/v1/alive", None).await.status, 404);
    let c = sim.counters();
    assert_eq!(
        (
            c.endpoint("alive").ok_2xx,
            c.endpoint("health").ok_2xx,
            c.endpoint("other").requests
        ),
        (1, 1, 1)
    );
    sim.stop();

    let sim = start(SimulatorConfig {
        unhealthy_ratio: 1.0,
        components: vec!["commserve".to_owned()],
        ..alt()
    });
    assert_eq!(
        Alt::new(&sim).get("/rest/status", None).await.json(),
        json!({"overall": "DEGRADED", "components": [{"id": "commserve", "state": "DOWN"}]})
    );
}

#[tokio::test]
async fn alt_dialect_takes_the_token_from_x_auth_token_only() {
    let sim = start(alt());
    let api = Alt::new(&sim);
    let token = api.login().await;
    let bearer = api
        .http
        .post(format!("{}/rest/hosts/h/backup", api.base))
        .bearer_auth(&token)
        .json(&json!({"level": "FULL"}));
    let a = send(bearer).await;
    assert_eq!(a.status, 401);
    assert_eq!(
        a.json(),
        json!({"error": {"code": 401, "message": "invalid or expired token"}})
    );
    assert_eq!(api.get("/rest/jobs/1", Some(&token)).await.status, 404);
    assert_eq!(api.get("/rest/jobs/J1", Some(&token)).await.status, 404);
    let a = api
        .post(
            "/rest/hosts/h/backup",
            Some(&token),
            json!({"level": "HOURLY"}),
        )
        .await;
    assert_eq!(a.status, 400);
    let a = api
        .post(
            "/rest/login",
            None,
            json!({"user": "probe", "pass": "wrong"}),
        )
        .await;
    assert_eq!(a.status, 401);
    assert_eq!(sim.counters().logins_failed, 1);
}

#[tokio::test]
async fn alt_rate_limit_answers_429_with_retry_after() {
    let sim = start(SimulatorConfig {
        rate_limit_per_sec: Some(1),
        rate_limit_burst: 1,
        ..alt()
    });
    let api = Alt::new(&sim);
    assert_eq!(api.get("/rest/ping", None).await.status, 200);
    let a = api.get("/rest/ping", None).await;
    assert_eq!(
        (a.status, &a.headers["retry-after"]),
        (429, &reqwest::header::HeaderValue::from_static("1"))
    );
    assert_eq!(
        a.json(),
        json!({"error": {"code": 429, "message": "rate limited"}})
    );
}

#[tokio::test]
async fn stop_does_not_wait_for_idle_keep_alive_connections() {
    let sim = start(quiet());
    let api = Reference::new(&sim);
    api.get("/api/v1/alive").await;
    let started = Instant::now();
    sim.stop();
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "stop waited {:?}",
        started.elapsed()
    );
    drop(api);
}

#[test]
fn spawn_rejects_an_invalid_configuration() {
    let cfg = SimulatorConfig {
        job_failure_ratio: 2.0,
        ..SimulatorConfig::default()
    };
    let err = spawn(cfg, "127.0.0.1:0".parse().unwrap()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(
        err.to_string()
            .contains("job_failure_ratio must be between 0 and 1, got 2"),
        "{err}"
    );
}

#[test]
fn spawn_reports_an_address_in_use() {
    let first = start(quiet());
    let err = spawn(quiet(), first.addr()).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
}

#[test]
fn base_url_uses_loopback_for_an_unspecified_address() {
    let sim = spawn(quiet(), "0.0.0.0:0".parse().unwrap()).unwrap();
    assert_eq!(
        sim.base_url(),
        format!("http://127.0.0.1:{}", sim.addr().port())
    );
    drop(sim);
}

#[test]
fn config_round_trips_through_toml() {
    let mut cfg = SimulatorConfig {
        rate_limit_per_sec: Some(5),
        dialect: Dialect::Alt,
        ..SimulatorConfig::default()
    };
    cfg.endpoint_faults.insert(
        "health".to_owned(),
        FaultConfig {
            latency_ms: Some(RangeMs::new(1, 2)),
            ..FaultConfig::default()
        },
    );
    let text = toml::to_string(&cfg).unwrap();
    assert_eq!(toml::from_str::<SimulatorConfig>(&text).unwrap(), cfg);
}
