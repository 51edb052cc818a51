//! Webhook ingest: `POST /hooks/gitlab` and `POST /hooks/github`.
//!
//! A delivery is verified (GitLab: `X-Gitlab-Token` against every configured secret in
//! constant time; GitHub: `X-Hub-Signature-256`), size-limited, parsed into a domain
//! event, and stored together with the jobs it causes in one transaction before the
//! answer. No work is done in the request: GitLab gives up after 10 s, disables a hook
//! after 4 failures and never retries.
//!
//! Answers: 202 stored (or stored and ignored), 200 a repeat of a stored delivery,
//! 400 unparseable, 401 unverified, 413 too large, 503 database unavailable.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};

pub mod spool;
pub mod writer;

use crate::config::Settings;
use crate::events::{ForgeKind, Parsed, PayloadError};
use crate::jobs::Planning;
use crate::metrics::Metrics;
use crate::storage::StoreOutcome;

/// What the webhook routes use.
#[derive(Clone)]
pub struct Ingest {
    pub settings: Arc<Settings>,
    /// Stores deliveries with their jobs, several per transaction under load.
    pub deliveries: writer::DeliveryWriter,
    pub metrics: Arc<Metrics>,
    /// Wakes idle workers in this process when a delivery enqueued jobs.
    pub jobs_ready: Arc<Notify>,
    /// Which jobs events cause.
    pub planning: Planning,
    /// Turns to read a delivery's body: at most [`BODIES_READ_AT_ONCE`] at a time.
    pub reading: Arc<Semaphore>,
}

/// Delivery bodies read at once. Credentials are checked before a body is read, so only
/// senders holding a secret take these turns; more wait up to [`TURN_WAIT`], then get 503.
pub const BODIES_READ_AT_ONCE: usize = 32;
/// How long a delivery waits for a turn to be read.
pub const TURN_WAIT: Duration = Duration::from_secs(10);
/// How long reading one body may take (GitLab itself gives up after 10 s).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// An answer with a JSON body `{"status": …, …}`.
fn answer(code: StatusCode, status: &str, extra: serde_json::Value) -> Response {
    let mut body = json!({ "status": status });
    if let (Some(obj), serde_json::Value::Object(more)) = (body.as_object_mut(), extra) {
        obj.extend(more);
    }
    (code, Json(body)).into_response()
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

pub async fn gitlab(State(app): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    receive(app, ForgeKind::GitLab, headers, body).await
}

pub async fn github(State(app): State<Ingest>, headers: HeaderMap, body: Body) -> Response {
    receive(app, ForgeKind::GitHub, headers, body).await
}

async fn receive(app: Ingest, source: ForgeKind, headers: HeaderMap, body: Body) -> Response {
    let forge = source.name();
    let event_header = match source {
        ForgeKind::GitLab => header(&headers, "x-gitlab-event"),
        ForgeKind::GitHub => header(&headers, "x-github-event"),
    };
    let event_label = event_header.map_or("unknown", metric_label);

    // Credentials first: a sender without them never gets its body read.
    let refused = |why: &'static str| {
        app.metrics.delivery(forge, event_label, "unauthorized");
        tracing::info!(forge, reason = why, "webhook delivery refused");
        answer(
            StatusCode::UNAUTHORIZED,
            "rejected",
            json!({ "error": why }),
        )
    };
    let github_signature = match credentials(&app, source, &headers) {
        Ok(sig) => sig,
        Err(why) => return refused(why),
    };
    let Ok(Ok(_turn)) = tokio::time::timeout(TURN_WAIT, app.reading.acquire()).await else {
        app.metrics.delivery(forge, event_label, "busy");
        return answer(
            StatusCode::SERVICE_UNAVAILABLE,
            "error",
            json!({ "error": "too many deliveries at once; send it again" }),
        );
    };
    let max = app.settings.server.max_body_bytes;
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, axum::body::to_bytes(body, max)).await
    {
        Ok(Ok(b)) => b,
        Ok(Err(_)) => {
            app.metrics.delivery(forge, event_label, "too_large");
            return answer(
                StatusCode::PAYLOAD_TOO_LARGE,
                "rejected",
                json!({ "error": format!("body larger than {max} bytes") }),
            );
        }
        Err(_) => {
            app.metrics.delivery(forge, event_label, "timeout");
            return answer(
                StatusCode::REQUEST_TIMEOUT,
                "rejected",
                json!({ "error": "the body was not sent in time" }),
            );
        }
    };
    if let Some((secret, sig)) = github_signature
        && let Err(why) = verify_github(&secret, &sig, &body)
    {
        return refused(why);
    }

    let parsed: Result<Parsed, PayloadError> = match source {
        ForgeKind::GitLab => crate::forge::gitlab::payload::parse(event_header, &body),
        ForgeKind::GitHub => crate::forge::github::payload::parse(event_header, &body),
    };
    let parsed = match parsed {
        Ok(p) => p,
        Err(e) => {
            app.metrics.delivery(forge, event_label, "bad_request");
            return answer(
                StatusCode::BAD_REQUEST,
                "rejected",
                json!({ "error": e.to_string() }),
            );
        }
    };

    // The sender picks the id, so it is only unique among that forge's deliveries.
    let delivery_id = header(&headers, "idempotency-key")
        .or_else(|| header(&headers, "x-gitlab-event-uuid"))
        .or_else(|| header(&headers, "x-github-delivery"))
        .map(|k| k.chars().take(200).collect::<String>())
        .unwrap_or_else(|| format!("nbforge-{}", uuid::Uuid::new_v4()));
    let dedupe_key = format!("{forge}:{delivery_id}");

    let work = match &parsed.event {
        Some(event) => crate::jobs::plan(source, event, app.planning),
        None => Default::default(),
    };
    let result = if parsed.event.is_some() {
        "queued"
    } else {
        "ignored"
    };
    let delivery = writer::Delivery {
        dedupe_key: dedupe_key.clone(),
        forge,
        event: parsed.kind.clone(),
        result,
        body,
        work,
    };
    match app.deliveries.store(delivery).await {
        Ok(writer::Written::Spooled) => {
            app.metrics.delivery(forge, &parsed.kind, "spooled");
            answer(
                StatusCode::ACCEPTED,
                "spooled",
                json!({ "delivery": delivery_id, "event": parsed.kind }),
            )
        }
        Ok(writer::Written::Stored(StoreOutcome::Stored { jobs, .. })) => {
            app.metrics.delivery(forge, &parsed.kind, result);
            if !jobs.is_empty() {
                app.jobs_ready.notify_waiters();
            }
            answer(
                StatusCode::ACCEPTED,
                result,
                json!({ "delivery": delivery_id, "event": parsed.kind, "jobs": jobs.len() }),
            )
        }
        Ok(writer::Written::Stored(StoreOutcome::Duplicate)) => {
            app.metrics.delivery(forge, &parsed.kind, "duplicate");
            answer(
                StatusCode::OK,
                "duplicate",
                json!({ "delivery": delivery_id }),
            )
        }
        Err(e) => {
            app.metrics.delivery(forge, &parsed.kind, "error");
            tracing::error!(forge, error = %e, "storing a delivery failed");
            answer(
                StatusCode::SERVICE_UNAVAILABLE,
                "error",
                json!({ "error": "the delivery could not be stored; send it again" }),
            )
        }
    }
}

/// The metrics label of an event header: one of a fixed set of event kinds, else `other`, so
/// that the senders of requests (authenticated or not) cannot grow the number of series.
fn metric_label(header: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        // GitLab's X-Gitlab-Event values.
        "push_hook",
        "tag_push_hook",
        "merge_request_hook",
        "member_hook",
        "subgroup_hook",
        "project_hook",
        "system_hook",
        "issue_hook",
        "note_hook",
        "pipeline_hook",
        "job_hook",
        "release_hook",
        // GitHub's X-GitHub-Event values.
        "push",
        "pull_request",
        "create",
        "delete",
        "ping",
        "member",
        "membership",
        "organization",
        "repository",
        "fork",
    ];
    let label = crate::events::kind_label(header);
    KNOWN
        .iter()
        .find(|k| **k == label)
        .copied()
        .unwrap_or("other")
}

/// Checks what can be checked before the body is read: the GitLab token entirely; for
/// GitHub, that a secret is configured and the signature header is well-formed (returned,
/// with the secret, to check against the body once it is read).
fn credentials(
    app: &Ingest,
    source: ForgeKind,
    headers: &HeaderMap,
) -> Result<Option<(crate::config::Secret, Vec<u8>)>, &'static str> {
    match source {
        ForgeKind::GitLab => {
            let secrets = &app.settings.forges.gitlab_webhook_secrets;
            if secrets.is_empty() {
                return Err("no GitLab webhook secret is configured on this server");
            }
            let presented = headers
                .get("x-gitlab-token")
                .filter(|t| !t.is_empty())
                .ok_or("missing X-Gitlab-Token")?;
            // Compare against every secret so the time taken does not tell which matched.
            // An empty configured secret never matches (start-up refuses one anyway).
            let matched = secrets.iter().fold(false, |any, s| {
                (!s.expose().is_empty() && s.matches(presented.as_bytes())) | any
            });
            if matched {
                Ok(None)
            } else {
                Err("wrong X-Gitlab-Token")
            }
        }
        ForgeKind::GitHub => {
            let secret = app
                .settings
                .forges
                .github_webhook_secret
                .as_ref()
                .filter(|s| !s.expose().is_empty())
                .ok_or("no GitHub webhook secret is configured on this server")?;
            let sig =
                header(headers, "x-hub-signature-256").ok_or("missing X-Hub-Signature-256")?;
            let hex_sig = sig
                .strip_prefix("sha256=")
                .ok_or("malformed X-Hub-Signature-256")?;
            let sig = hex::decode(hex_sig).map_err(|_| "malformed X-Hub-Signature-256")?;
            Ok(Some((secret.clone(), sig)))
        }
    }
}

/// Checks GitHub's `X-Hub-Signature-256` over the body.
fn verify_github(
    secret: &crate::config::Secret,
    sig: &[u8],
    body: &[u8],
) -> Result<(), &'static str> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes())
        .map_err(|_| "unusable GitHub secret")?;
    mac.update(body);
    mac.verify_slice(sig)
        .map_err(|_| "wrong X-Hub-Signature-256")
}

/// `sha256=<hex>` signature of `body` under `secret`, as GitHub sends it.
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}
