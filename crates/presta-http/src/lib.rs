//! The daemon's HTTP API (axum). Every endpoint is documented in `docs/openapi.yaml`.
//!
//! | route | what |
//! |---|---|
//! | `GET /` | the status page (HTML, no JavaScript, refreshes itself) |
//! | `GET /healthz` | the process is alive (no AWS call) |
//! | `GET /readyz` | configuration loaded and the last AWS observation succeeded recently; 503 with the reason otherwise |
//! | `GET /metrics` | Prometheus text format |
//! | `POST /reconcile`, `POST /reconcile/{stack}` | force a run (202); `?wait=true` waits and returns the result |
//! | `GET /stacks`, `GET /stacks/{stack}` | status: per resource, drift, last run, outputs |
//! | `GET /stacks/{stack}/plan` | a fresh dry run |
//! | `POST /stacks/{stack}/commands/{command}` | run a `presta-ctl` command on the stack's instances (SSM Run Command) and wait for each result |
//! | `POST /stacks/{stack}/approve` | apply a held plan, named by its hash (`{"plan_hash": "..."}`) |
//! | `GET /orphans` | resources of stacks that are no longer in the configuration |
//!
//! The handlers never reconcile themselves: they ask the [`Controller`]. Endpoints that act or
//! call AWS (`POST /reconcile*`, `GET /stacks/{stack}/plan`, `POST /stacks/{stack}/approve`, `POST /stacks/{stack}/commands/*`) require `Authorization: Bearer
//! <token>` when a token is configured. Errors are JSON: `{"error": "...", "status": 404}`.
//! No response carries a secret value: reports hold field diffs, and secrets never enter one.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use presta_controller::metrics::RunResult;
use presta_controller::{Controller, TriggerError};
use serde::Deserialize;
use serde_json::json;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub controller: Controller,
    /// The bearer token that guards the endpoints that act, if one is configured.
    pub token: Option<Arc<str>>,
    /// The longest `?wait=true` waits before answering 202 with the run still going.
    pub wait_timeout: Duration,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(status_page))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/reconcile", post(reconcile_all))
        .route("/reconcile/{stack}", post(reconcile_one))
        .route("/stacks", get(stacks))
        .route("/stacks/{stack}", get(stack))
        .route("/stacks/{stack}/plan", get(plan))
        .route("/stacks/{stack}/approve", post(approve))
        .route("/stacks/{stack}/commands/{command}", post(command))
        .route("/orphans", get(orphans))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

/// A JSON error answer.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (
            self.status,
            Json(json!({"error": self.message, "status": self.status.as_u16()})),
        )
            .into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"presta-reconciler\""),
            );
        }
        resp
    }
}

impl From<TriggerError> for ApiError {
    fn from(e: TriggerError) -> ApiError {
        let status = match e {
            TriggerError::UnknownStack { .. } => StatusCode::NOT_FOUND,
            TriggerError::ShuttingDown | TriggerError::Standby { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            TriggerError::NotHeld { .. } | TriggerError::PlanChanged { .. } => StatusCode::CONFLICT,
        };
        ApiError::new(status, e.to_string())
    }
}

/// The `{stack}` of a path. A path that cannot be decoded (`/stacks/%ff%fe`) is a JSON 400
/// like every other error, not axum's plain-text rejection.
pub struct StackName(String);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for StackName {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Path::<String>::from_request_parts(parts, state)
            .await
            .map(|Path(s)| StackName(s))
            .map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "{}; a stack name is UTF-8 text (letters, digits, hyphens)",
                        e.body_text()
                    ),
                )
            })
    }
}

/// Compares in time independent of where the first difference is.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorize(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(token) = &state.token else {
        return Ok(());
    };
    // The scheme is case-insensitive (RFC 7235): `Bearer`, `bearer`, `BEARER`.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token);
    match given {
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "this endpoint needs `Authorization: Bearer <token>` (the daemon's --token-file)",
        )),
        Some(t) if same_secret(t.trim().as_bytes(), token.as_bytes()) => Ok(()),
        Some(_) => Err(ApiError::new(StatusCode::FORBIDDEN, "wrong bearer token")),
    }
}

async fn status_page(State(state): State<AppState>) -> Response {
    let overview = serde_json::to_value(state.controller.overview()).unwrap_or_default();
    let orphans = serde_json::to_value(state.controller.orphans()).unwrap_or_default();
    let page = page::render(&overview, &orphans, state.controller.readiness());
    (
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            ),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'",
                ),
            ),
        ],
        page,
    )
        .into_response()
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn readyz(State(state): State<AppState>) -> Response {
    match state.controller.readiness() {
        Ok(()) => Json(json!({"status": "ready"})).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": reason})),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        state.controller.metrics().render(),
    )
        .into_response()
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReconcileParams {
    #[serde(default)]
    wait: bool,
}

async fn reconcile_all(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<ReconcileParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    reconcile(state, headers, params, None).await
}

async fn reconcile_one(
    State(state): State<AppState>,
    StackName(stack): StackName,
    headers: HeaderMap,
    params: Result<Query<ReconcileParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    reconcile(state, headers, params, Some(stack)).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ApproveBody {
    plan_hash: String,
    /// Who approves, as they name themselves (recorded with "via the API token").
    #[serde(default)]
    approved_by: Option<String>,
}

/// Approves a held plan: the body names it by its hash (from `GET /stacks/{stack}` or the
/// log line), so a plan that changed in between is not applied by mistake (409).
async fn approve(
    State(state): State<AppState>,
    StackName(stack): StackName,
    headers: HeaderMap,
    params: Result<Query<ReconcileParams>, QueryRejection>,
    body: Result<Json<ApproveBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let Json(body) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "{}; send `{{\"plan_hash\": \"<hash of the held plan>\"}}` with Content-Type: application/json",
                e.body_text()
            ),
        )
    })?;
    let wait = wait_param(params)?;
    let by = match (&body.approved_by, state.token.is_some()) {
        (Some(name), true) => format!("{} (API token)", name.trim()),
        (Some(name), false) => format!("{} (API, no token configured)", name.trim()),
        (None, true) => "the API token's holder".to_string(),
        (None, false) => "an API caller (no token configured)".to_string(),
    };
    let target = state
        .controller
        .approve_as(&stack, body.plan_hash.trim(), &by)?;
    respond(state, wait, vec![target]).await
}

async fn reconcile(
    state: AppState,
    headers: HeaderMap,
    params: Result<Query<ReconcileParams>, QueryRejection>,
    stack: Option<String>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let wait = wait_param(params)?;
    let targets = state.controller.trigger(stack.as_deref())?;
    respond(state, wait, targets).await
}

fn wait_param(params: Result<Query<ReconcileParams>, QueryRejection>) -> Result<bool, ApiError> {
    params.map(|Query(p)| p.wait).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{}; the only parameter is `wait=true|false`", e.body_text()),
        )
    })
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandParams {
    /// `set-domain`'s domain, `thumbs`' image type.
    arg: Option<String>,
}

/// Runs a maintenance command on the stack's instances and answers with every instance's
/// result (bounded by the request wait timeout). Unknown commands and bad arguments are
/// refused (400) before any AWS call.
async fn command(
    State(state): State<AppState>,
    path: Result<Path<(String, String)>, axum::extract::rejection::PathRejection>,
    headers: HeaderMap,
    params: Result<Query<CommandParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let Path((stack, name)) =
        path.map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.body_text()))?;
    let Query(params) = params.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("{}; the only parameter is `arg`", e.body_text()),
        )
    })?;
    let cmd = presta_aws::commands::Maintenance::parse(&name)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
    match state
        .controller
        .exec(&stack, cmd, params.arg.as_deref(), state.wait_timeout)
        .await
    {
        Ok(run) => Ok(Json(json!({"stack": stack, "run": run})).into_response()),
        Err(presta_controller::ExecError::Trigger(t)) => Err(t.into()),
        Err(presta_controller::ExecError::Invalid(m)) => {
            Err(ApiError::new(StatusCode::BAD_REQUEST, m))
        }
        Err(e @ presta_controller::ExecError::Aws(_)) => {
            Err(ApiError::new(StatusCode::BAD_GATEWAY, e.to_string()))
        }
    }
}

/// 202 at once, or with `?wait=true` the results of the runs (202 if they take too long).
async fn respond(
    state: AppState,
    wait: bool,
    targets: Vec<(String, u64)>,
) -> Result<Response, ApiError> {
    let names: Vec<&str> = targets.iter().map(|(n, _)| n.as_str()).collect();
    if !wait {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({"accepted": names, "message": "reconcile queued"})),
        )
            .into_response());
    }
    match state
        .controller
        .wait_for(&targets, state.wait_timeout)
        .await?
    {
        Some(reports) => {
            let results: Vec<_> = reports
                .iter()
                .map(|r| json!({"stack": r.stack, "result": RunResult::of(r), "report": r}))
                .collect();
            Ok(Json(json!({"finished": true, "results": results})).into_response())
        }
        None => Ok((
            StatusCode::ACCEPTED,
            Json(json!({
                "accepted": names,
                "finished": false,
                "message": format!("the run did not finish within {}s; it goes on (see GET /stacks)", state.wait_timeout.as_secs()),
            })),
        )
            .into_response()),
    }
}

async fn stacks(State(state): State<AppState>) -> Json<presta_controller::Overview> {
    Json(state.controller.overview())
}

async fn orphans(State(state): State<AppState>) -> Json<presta_controller::OrphanStatus> {
    Json(state.controller.orphans())
}

async fn stack(
    State(state): State<AppState>,
    StackName(stack): StackName,
) -> Result<Response, ApiError> {
    match state.controller.status(&stack) {
        Some(s) => Ok(Json(s).into_response()),
        None => Err(unknown(&state, &stack)),
    }
}

async fn plan(
    State(state): State<AppState>,
    StackName(stack): StackName,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize(&state, &headers)?;
    let report = state.controller.plan(&stack).await?;
    Ok(Json(json!({
        "stack": report.stack,
        "converged": report.converged(),
        "pending": report.pending(),
        "blocked": report.blocked(),
        "report": report,
    }))
    .into_response())
}

fn unknown(state: &AppState, stack: &str) -> ApiError {
    ApiError::from(TriggerError::UnknownStack {
        stack: stack.to_string(),
        known: state.controller.stack_names().join(", "),
    })
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; see docs/openapi.yaml (/healthz, /readyz, /metrics, /reconcile, /stacks, /orphans)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint (POST /reconcile..., GET for the others)",
    )
}

mod page;

#[cfg(test)]
mod tests;
