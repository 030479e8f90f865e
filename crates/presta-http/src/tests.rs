//! Handler tests: every endpoint, status code and auth case, through `oneshot` on the router.
//! The controller behind them points at a closed loopback port (static credentials, one
//! attempt), so any AWS call fails at once and never leaves the machine.

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use presta_aws::ClientSettings;
use presta_controller::metrics::Metrics;
use presta_controller::{Controller, ControllerSettings};
use presta_engine::{Engine, Settings};
use tower::ServiceExt;

use super::*;

fn stacks() -> Vec<presta_spec::Stack> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/demo.yaml");
    presta_spec::load_path(&path)
        .expect("the demo config is valid")
        .into_iter()
        .map(|l| l.stack.with_defaults())
        .collect()
}

fn controller() -> Controller {
    let engine = Engine::new(Settings {
        client: ClientSettings {
            endpoint_url: Some("http://127.0.0.1:9".into()),
            max_attempts: 1,
            connect_timeout: Duration::from_millis(200),
            static_credentials: Some(("testing".into(), "testing".into())),
            ..ClientSettings::default()
        },
        wait_timeout: Duration::ZERO,
        ..Settings::default()
    });
    Controller::new(
        engine,
        Metrics::new(),
        ControllerSettings::default(),
        stacks(),
        vec!["config/demo.yaml".into()],
    )
}

fn app(token: Option<&str>) -> (Router, Controller) {
    let controller = controller();
    let state = AppState {
        controller: controller.clone(),
        token: token.map(Arc::from),
        wait_timeout: Duration::from_millis(300),
    };
    (router(state), controller)
}

async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
) -> (StatusCode, String) {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

#[tokio::test]
async fn healthz_answers_without_aws() {
    let (app, _) = app(None);
    let (status, body) = call(&app, Method::GET, "/healthz", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json(&body)["status"], "ok");
}

#[tokio::test]
async fn readyz_is_503_with_a_reason_before_any_observation() {
    let (app, _) = app(None);
    let (status, body) = call(&app, Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        json(&body)["reason"],
        "no AWS observation has completed yet"
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let (app, _) = app(None);
    let resp = app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let body = String::from_utf8(
        resp.into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();
    assert!(body.contains("# TYPE presta_build_info gauge"), "{body}");
    assert!(body.contains("presta_stacks_configured 1"), "{body}");
}

#[tokio::test]
async fn reconcile_without_wait_is_accepted_at_once() {
    let (app, _) = app(None);
    let (status, body) = call(&app, Method::POST, "/reconcile", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(json(&body)["accepted"], serde_json::json!(["demo"]));
    let (status, body) = call(&app, Method::POST, "/reconcile/demo", None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
}

#[tokio::test]
async fn reconcile_of_an_unknown_stack_is_404_and_names_the_known_ones() {
    let (app, _) = app(None);
    let (status, body) = call(&app, Method::POST, "/reconcile/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let v = json(&body);
    assert_eq!(v["status"], 404);
    assert!(
        v["error"].as_str().unwrap().contains("no stack `nope`"),
        "{body}"
    );
    assert!(v["error"].as_str().unwrap().contains("demo"), "{body}");
    let (status, _) = call(&app, Method::GET, "/stacks/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&app, Method::GET, "/stacks/nope/plan", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn wrong_methods_are_405_and_unknown_paths_404_in_json() {
    let (app, _) = app(None);
    for (method, uri) in [
        (Method::GET, "/reconcile"),
        (Method::GET, "/reconcile/demo"),
        (Method::POST, "/healthz"),
        (Method::DELETE, "/stacks/demo"),
        (Method::POST, "/metrics"),
    ] {
        let (status, body) = call(&app, method.clone(), uri, None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{method} {uri}");
        assert_eq!(json(&body)["status"], 405);
    }
    let (status, body) = call(&app, Method::GET, "/nothing-here", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(json(&body)["error"].as_str().unwrap().contains("openapi"));
}

#[tokio::test]
async fn a_bad_query_is_400_with_what_is_allowed() {
    let (app, _) = app(None);
    let (status, body) = call(&app, Method::POST, "/reconcile?wait=maybe", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json(&body)["error"]
            .as_str()
            .unwrap()
            .contains("wait=true|false"),
        "{body}"
    );
    let (status, _) = call(&app, Method::POST, "/reconcile?force=1", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn with_a_token_acting_endpoints_need_it_and_reading_ones_do_not() {
    let (app, _) = app(Some("s3cret-token"));
    for (method, uri) in [
        (Method::POST, "/reconcile"),
        (Method::POST, "/reconcile/demo"),
        (Method::GET, "/stacks/demo/plan"),
    ] {
        let (status, body) = call(&app, method.clone(), uri, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
        assert!(json(&body)["error"].as_str().unwrap().contains("Bearer"));
        let (status, _) = call(&app, method.clone(), uri, Some("wrong")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {uri}");
    }
    let (status, _) = call(&app, Method::POST, "/reconcile/demo", Some("s3cret-token")).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    for uri in ["/healthz", "/readyz", "/metrics", "/stacks", "/stacks/demo"] {
        let (status, _) = call(&app, Method::GET, uri, None).await;
        assert_ne!(status, StatusCode::UNAUTHORIZED, "{uri} is read-only");
    }
    let resp = app
        .clone()
        .oneshot(Request::post("/reconcile").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert!(resp.headers().contains_key("www-authenticate"));
}

#[tokio::test]
async fn stacks_list_the_configuration_and_each_stack() {
    let (app, _) = app(None);
    let (status, body) = call(&app, Method::GET, "/stacks", None).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["stacks"][0]["stack"], "demo");
    assert_eq!(v["stacks"][0]["state"], "unknown");
    assert_eq!(v["config"]["sources"][0], "config/demo.yaml");
    let (status, body) = call(&app, Method::GET, "/stacks/demo", None).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["policy"], "enforce");
    assert_eq!(v["region"], "eu-west-3");
}

#[tokio::test]
async fn wait_true_without_a_finished_run_answers_202_and_says_so() {
    // The loop is not running: the run cannot finish within the wait.
    let (app, _) = app(None);
    let (status, body) = call(&app, Method::POST, "/reconcile/demo?wait=true", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(json(&body)["finished"], false);
}

#[tokio::test]
async fn wait_true_returns_the_run_result_and_failures_make_readyz_fail() {
    let (app, controller) = app(None);
    let looping = controller.clone();
    let handle = tokio::spawn(async move { looping.run(Duration::from_secs(5)).await });
    let state = AppState {
        controller: controller.clone(),
        token: None,
        wait_timeout: Duration::from_secs(30),
    };
    let app_long = router(state);
    let (status, body) = call(&app_long, Method::POST, "/reconcile/demo?wait=true", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json(&body);
    assert_eq!(v["finished"], true);
    assert_eq!(v["results"][0]["stack"], "demo");
    assert_eq!(
        v["results"][0]["result"], "error",
        "nothing answers on port 9"
    );
    let (status, body) = call(&app, Method::GET, "/readyz", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        json(&body)["reason"]
            .as_str()
            .unwrap()
            .contains("the last AWS observation failed"),
        "{body}"
    );
    let (_, body) = call(&app, Method::GET, "/stacks/demo", None).await;
    let v = json(&body);
    assert_eq!(v["state"], "error");
    assert_eq!(v["consecutive_failures"], 1);
    assert!(
        v["next_run_in_seconds"].as_f64().unwrap() > 0.0,
        "failures back off: {body}"
    );
    let (_, metrics) = call(&app, Method::GET, "/metrics", None).await;
    assert!(
        metrics.contains(r#"presta_reconcile_runs_total{result="error",stack="demo"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"outcome="transport_error""#),
        "{metrics}"
    );

    controller.shutdown();
    let (status, body) = call(&app, Method::POST, "/reconcile", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert!(
        tokio::time::timeout(Duration::from_secs(10), handle)
            .await
            .unwrap()
            .unwrap()
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let (app, _) = app(Some("0123456789abcdef0123"));
    for scheme in ["Bearer", "bearer", "BEARER"] {
        let req = Request::builder()
            .method(Method::POST)
            .uri("/reconcile/demo")
            .header("authorization", format!("{scheme} 0123456789abcdef0123"))
            .body(Body::empty())
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "{scheme}");
    }
    let req = Request::builder()
        .method(Method::POST)
        .uri("/reconcile/demo")
        .header("authorization", "Basic 0123456789abcdef0123")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::UNAUTHORIZED,
        "another scheme is not a bearer token"
    );
}

#[tokio::test]
async fn a_path_that_is_not_utf8_is_a_json_400() {
    let (app, _) = app(None);
    for uri in ["/stacks/%ff%fe", "/stacks/%ff%fe/plan", "/reconcile/%c3%28"] {
        let method = if uri.starts_with("/reconcile") {
            Method::POST
        } else {
            Method::GET
        };
        let (status, body) = call(&app, method, uri, None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri}: {body}");
        assert_eq!(json(&body)["status"], 400, "{uri}");
    }
}

#[tokio::test]
async fn orphans_are_served_before_the_first_search() {
    let (app, _) = app(None);
    let (status, body) = call(&app, Method::GET, "/orphans", None).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["orphans"], serde_json::json!([]));
    assert!(v["help"].as_str().unwrap().contains("destroy --stack"));
}

#[tokio::test]
async fn a_shutdown_answers_the_waiting_callers_503_at_once() {
    let controller = controller();
    let state = AppState {
        controller: controller.clone(),
        token: None,
        wait_timeout: Duration::from_secs(60),
    };
    let app = router(state);
    let waiters: Vec<_> = (0..20)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move {
                call(&app, Method::POST, "/reconcile/demo?wait=true", None).await
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    controller.shutdown();
    for w in waiters {
        // The controller's loop is not running: no run finishes, every caller waits until
        // the shutdown answers it, never for the 60 s wait.
        let (status, body) = w.await.unwrap();
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(
            json(&body)["error"]
                .as_str()
                .unwrap()
                .contains("shutting down")
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}
