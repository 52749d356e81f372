//! Tests only: the simulator served on the test's own thread, so that tests with paused
//! tokio time can talk to it (see [`crate::test_support::loopback`] for why): each request
//! goes to the same [`server::dispatch`] as the real server, through actix-web's in-process
//! test service.

use super::server::{self, Shared};
use super::{CountersSnapshot, SimulatorConfig};
use crate::test_support::loopback::{LoopbackServer, Request, Response};
use actix_web::http::Method;
use actix_web::{test, web, App};
use std::rc::Rc;

/// A simulator on the current thread (stopped when dropped).
pub(crate) struct LocalSimulator {
    server: LoopbackServer,
    shared: web::Data<Shared>,
}

impl LocalSimulator {
    /// Starts a simulator with `cfg` (validated) on 127.0.0.1:0.
    pub(crate) async fn start(cfg: SimulatorConfig) -> Self {
        cfg.validate().expect("valid simulator configuration");
        let shared = web::Data::new(Shared::new(cfg));
        let app = Rc::new(
            test::init_service(
                App::new()
                    .app_data(shared.clone())
                    .default_service(web::to(server::dispatch)),
            )
            .await,
        );
        let server = LoopbackServer::start(Rc::new(move |r: Request| {
            let app = app.clone();
            Box::pin(async move {
                let mut req = test::TestRequest::default()
                    .method(Method::from_bytes(r.method.as_bytes()).unwrap())
                    .uri(&r.uri)
                    .set_payload(r.body);
                for h in r.headers {
                    req = req.insert_header(h);
                }
                let res = test::call_service(&*app, req.to_request()).await;
                let head = res.response().head().clone();
                let body = test::read_body(res).await;
                Response {
                    status: head.status.as_u16(),
                    headers: head
                        .headers
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_owned()))
                        .collect(),
                    body: body.to_vec(),
                }
            })
        }))
        .await;
        Self { server, shared }
    }

    pub(crate) fn base_url(&self) -> String {
        self.server.base_url()
    }

    pub(crate) fn counters(&self) -> CountersSnapshot {
        self.shared.counters()
    }
}
