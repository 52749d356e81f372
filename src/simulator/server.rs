//! The HTTP face of the simulator: one actix-web handler for every path.
//!
//! Routing is done by hand (`dialect::route`) rather than by actix routes, so that every
//! request, known or not, goes through the same counting, rate limiting and faults.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};

use super::config::{Dialect, SimulatorConfig};
use super::counters::CountersSnapshot;
use super::dialect::{self, Answer, Route};
use super::state::State;

/// The control endpoint answering the counters (not counted, not rate limited).
pub const COUNTERS_PATH: &str = "/_sim/counters";

/// Paths under this prefix are the simulator's own, never the portal's.
const CONTROL_PREFIX: &str = "/_sim/";

/// State shared by the HTTP workers and the `SimulatorHandle`.
pub struct Shared {
    // A std Mutex, not tokio's: it is held for a few microseconds, never across an await,
    // and the handle locks it from synchronous code.
    state: Mutex<State>,
    started: Instant,
    dialect: Dialect,
}

impl Shared {
    /// Shared state for a validated `cfg`, its clock starting now.
    pub fn new(cfg: SimulatorConfig) -> Self {
        let dialect = cfg.dialect;
        Self {
            state: Mutex::new(State::new(cfg)),
            started: Instant::now(),
            dialect,
        }
    }

    /// A consistent copy of the counters.
    pub fn counters(&self) -> CountersSnapshot {
        self.lock().counters()
    }

    /// Makes every issued token invalid.
    pub fn expire_tokens(&self) {
        self.lock().expire_tokens();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock cannot leave the counters half-updated in a way that
        // matters more than losing the simulator, so a poisoned lock is used as is.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Answers any request.
pub(crate) async fn dispatch(
    req: HttpRequest,
    body: web::Bytes,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let path = req.path();
    if path.starts_with(CONTROL_PREFIX) {
        return control(&req, &shared);
    }
    let dialect = shared.dialect;
    let route = dialect::route(dialect, req.method(), path);
    let token = dialect::token(dialect, req.headers());
    let call = match &route {
        Route::Endpoint {
            endpoint, param, ..
        } => Some(dialect::parse_request(
            dialect,
            *endpoint,
            param.as_deref(),
            req.query_string(),
            &body,
        )),
        Route::NotFound => None,
    };
    let json = dialect::wants_json(req.headers());
    let reply = {
        let mut state = shared.lock();
        // Read the clock under the lock, so that request offsets are recorded in order.
        let now_ms = u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        state.handle(now_ms, &route, token.as_deref(), call)
    };
    if reply.delay_ms > 0 {
        actix_rt::time::sleep(Duration::from_millis(reply.delay_ms)).await;
    }
    if dialect == Dialect::Commvault {
        let (status, content_type, body) = dialect::commvault_answer(&route, &reply.answer, json);
        return with_retry_after(
            HttpResponse::build(
                StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            )
            .content_type(content_type)
            .body(body),
            &reply.answer,
        );
    }
    respond(dialect, &reply.answer)
}

fn control(req: &HttpRequest, shared: &Shared) -> HttpResponse {
    if req.path() != COUNTERS_PATH {
        return json_response(
            StatusCode::NOT_FOUND,
            r#"{"status":"KO","message":"not found"}"#.to_owned(),
        );
    }
    if req.method() != Method::GET {
        return json_response(
            StatusCode::METHOD_NOT_ALLOWED,
            r#"{"status":"KO","message":"method not allowed"}"#.to_owned(),
        );
    }
    match serde_json::to_string(&shared.counters()) {
        Ok(body) => json_response(StatusCode::OK, body),
        Err(e) => {
            tracing::error!(error = %e, "simulator counters not serializable");
            HttpResponse::InternalServerError().finish()
        }
    }
}

fn respond(dialect: Dialect, answer: &Answer) -> HttpResponse {
    let status = StatusCode::from_u16(answer.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let response = json_response(status, dialect::render_body(dialect, answer));
    with_retry_after(response, answer)
}

/// The `Retry-After` header of a rate-limited answer.
fn with_retry_after(mut response: HttpResponse, answer: &Answer) -> HttpResponse {
    if let Answer::RateLimited { retry_after_secs } = answer {
        if let Ok(value) = retry_after_secs.to_string().try_into() {
            response
                .headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, value);
        }
    }
    response
}

fn json_response(status: StatusCode, body: String) -> HttpResponse {
    HttpResponse::build(status)
        .content_type("application/json")
        .body(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::{test, App};

    fn app_data(cfg: SimulatorConfig) -> web::Data<Shared> {
        web::Data::new(Shared::new(cfg))
    }

    fn quiet() -> SimulatorConfig {
        SimulatorConfig {
            latency_ms: super::super::config::RangeMs::new(0, 0),
            ..SimulatorConfig::default()
        }
    }

    #[actix_web::test]
    async fn unknown_path_gets_404_and_is_counted_as_other() {
        let data = app_data(quiet());
        let app = test::init_service(
            App::new()
                .app_data(data.clone())
                .default_service(web::to(dispatch)),
        )
        .await;
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/nope").to_request()).await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            res.headers().get("content-type").unwrap(),
            "application/json"
        );
        let other = data.counters().endpoint("other");
        assert_eq!((other.requests, other.client_4xx), (1, 1));
    }

    #[actix_web::test]
    async fn wrong_method_gets_405() {
        let data = app_data(quiet());
        let app = test::init_service(
            App::new()
                .app_data(data.clone())
                .default_service(web::to(dispatch)),
        )
        .await;
        let res = test::call_service(
            &app,
            test::TestRequest::post().uri("/api/v1/alive").to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(data.counters().endpoint("alive").client_4xx, 1);
    }

    #[actix_web::test]
    async fn counters_endpoint_is_not_counted_and_not_rate_limited() {
        let cfg = SimulatorConfig {
            rate_limit_per_sec: Some(1),
            rate_limit_burst: 1,
            ..quiet()
        };
        let data = app_data(cfg);
        let app = test::init_service(
            App::new()
                .app_data(data.clone())
                .default_service(web::to(dispatch)),
        )
        .await;
        for _ in 0..3 {
            let res = test::call_service(
                &app,
                test::TestRequest::get().uri(COUNTERS_PATH).to_request(),
            )
            .await;
            assert_eq!(res.status(), StatusCode::OK);
            let snapshot: CountersSnapshot = test::read_body_json(res).await;
            assert_eq!(snapshot.total_requests(), 0);
        }
        let res = test::call_service(
            &app,
            test::TestRequest::get().uri("/_sim/other").to_request(),
        )
        .await;
        assert_eq!(res.status(), StatusCode::NOT_FOUND);
        assert_eq!(data.counters().total_requests(), 0);
    }
}
