//! [`WebError`]: what a route answers when it cannot do what was asked. Page routes get
//! an error page from the `error.html` template, `/api/…` routes get `{"error": …}`; the
//! status says which kind of problem it was. Internal errors are logged once, here, and
//! answered without detail.

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

use super::templates::Templates;

/// An answer other than success. The messages of every variant but `Internal` are
/// shown to the user, so they must not carry secrets or internal detail.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    /// 400: the request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// 401: credentials are missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the action is not allowed (for instance, switched off).
    #[error("{0}")]
    Forbidden(String),
    /// 404: nothing here.
    #[error("{0}")]
    NotFound(String),
    /// 409: the resource is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// 413: the request body is over the limit.
    #[error("the request body is too large")]
    PayloadTooLarge,
    /// 413, saying which limit (an upload over `NBFORGE_UPLOAD_MAX_BYTES`).
    #[error("{0}")]
    TooLarge(String),
    /// 422: the request is well-formed but its values are not acceptable.
    #[error("{0}")]
    Unprocessable(String),
    /// 303 to the login page (the path, with `next`), for pages a login may open.
    #[error("log in to see this page")]
    LoginRequired(String),
    /// 400: a login did not complete; the page offers to log in again.
    #[error("{0}")]
    LoginFailed(String),
    /// 429: a limit on how much one may ask for at once.
    #[error("{0}")]
    TooManyRequests(String),
    /// 503: something nbforge depends on is unavailable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: our fault; logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<crate::storage::DbError> for WebError {
    fn from(e: crate::storage::DbError) -> Self {
        WebError::Internal(e.into())
    }
}

impl From<crate::worksheet::NotebookError> for WebError {
    fn from(e: crate::worksheet::NotebookError) -> Self {
        WebError::Internal(e.into())
    }
}

impl From<JsonRejection> for WebError {
    fn from(r: JsonRejection) -> Self {
        WebError::from_rejection(r.status(), r.body_text())
    }
}

impl From<FormRejection> for WebError {
    fn from(r: FormRejection) -> Self {
        WebError::from_rejection(r.status(), r.body_text())
    }
}

impl WebError {
    fn from_rejection(status: StatusCode, text: String) -> Self {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => WebError::PayloadTooLarge,
            StatusCode::UNPROCESSABLE_ENTITY => WebError::Unprocessable(text),
            StatusCode::UNSUPPORTED_MEDIA_TYPE | StatusCode::BAD_REQUEST => {
                WebError::BadRequest(text)
            }
            _ => WebError::Internal(anyhow::anyhow!("request rejected ({status}): {text}")),
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::Conflict(_) => StatusCode::CONFLICT,
            WebError::PayloadTooLarge | WebError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            WebError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            WebError::LoginRequired(_) => StatusCode::SEE_OTHER,
            WebError::LoginFailed(_) => StatusCode::BAD_REQUEST,
            WebError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            WebError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// What the user is told; `None` for internal errors.
    fn public_message(&self) -> Option<String> {
        match self {
            WebError::Internal(_) => None,
            e => Some(e.to_string()),
        }
    }
}

/// The error carried from [`WebError::into_response`] to [`answer_errors`], which knows
/// the route and the templates.
#[derive(Clone, Debug)]
struct ErrorAnswer {
    status: StatusCode,
    message: Option<String>,
    /// Offer a "log in again" link.
    login_again: bool,
}

impl IntoResponse for WebError {
    fn into_response(self) -> Response {
        if let WebError::Internal(e) = &self {
            tracing::error!(error = %format!("{e:#}"), "request failed");
        }
        if let WebError::LoginRequired(path) = &self {
            return super::auth::to_login(path);
        }
        let answer = ErrorAnswer {
            status: self.status(),
            message: self.public_message(),
            login_again: matches!(self, WebError::LoginFailed(_)),
        };
        // Without `answer_errors` (never in the router): plain text.
        let mut res = (
            answer.status,
            answer
                .message
                .clone()
                .unwrap_or_else(|| INTERNAL_MESSAGE.to_owned()),
        )
            .into_response();
        res.extensions_mut().insert(answer);
        res
    }
}

const INTERNAL_MESSAGE: &str = "internal error; see the server log";

/// Middleware: turns a [`WebError`] answer into JSON for `/api/…` and into an error page
/// for everything else.
pub async fn answer_errors(
    State(templates): State<Arc<Templates>>,
    req: Request,
    next: Next,
) -> Response {
    let api = req.uri().path().starts_with("/api/");
    render(&templates, next.run(req).await, api)
}

/// A response as it leaves: an error answer becomes JSON (`api`) or an error page.
pub fn render(templates: &Templates, mut res: Response, api: bool) -> Response {
    let Some(answer) = res.extensions_mut().remove::<ErrorAnswer>() else {
        return res;
    };
    if api {
        let message = answer.message.as_deref().unwrap_or(INTERNAL_MESSAGE);
        return (answer.status, Json(json!({ "error": message }))).into_response();
    }
    match error_page(templates, &answer) {
        Ok(page) => page,
        Err(e) => {
            tracing::error!(error = %e, "rendering an error page failed");
            (answer.status, "error\n").into_response()
        }
    }
}

fn error_page(templates: &Templates, answer: &ErrorAnswer) -> Result<Response, WebError> {
    let (title, heading, message) = match answer.status {
        StatusCode::INTERNAL_SERVER_ERROR => (
            "Error",
            "Something went wrong",
            Some("Please try again later."),
        ),
        StatusCode::NOT_FOUND => ("Not found", "Not found", answer.message.as_deref()),
        StatusCode::PAYLOAD_TOO_LARGE => ("Too large", "Too large", answer.message.as_deref()),
        StatusCode::UNAUTHORIZED => (
            "Login required",
            "Login required",
            answer.message.as_deref(),
        ),
        StatusCode::FORBIDDEN => ("Forbidden", "Forbidden", answer.message.as_deref()),
        StatusCode::SERVICE_UNAVAILABLE => {
            ("Unavailable", "Unavailable", answer.message.as_deref())
        }
        _ if answer.login_again => ("Login failed", "Login failed", answer.message.as_deref()),
        _ => (
            "Invalid request",
            "Invalid request",
            answer.message.as_deref(),
        ),
    };
    templates.page(
        answer.status,
        "error.html",
        minijinja::context! { title, heading, message, login_again => answer.login_again },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::templates::testing::text;

    #[tokio::test]
    async fn renders_error_page() {
        let t = Templates::new();
        let answer = ErrorAnswer {
            status: StatusCode::NOT_FOUND,
            message: Some("No worksheet <here>.".into()),
            login_again: false,
        };
        let (status, page) = text(error_page(&t, &answer).unwrap()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        // The whole page once: the frame every page shares.
        insta::assert_snapshot!(page);

        let internal = ErrorAnswer {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: None,
            login_again: false,
        };
        let (status, page) = text(error_page(&t, &internal).unwrap()).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert!(page.contains("<h1>Something went wrong</h1>\n<p>Please try again later.</p>"));
    }

    #[test]
    fn statuses() {
        assert_eq!(
            WebError::BadRequest("x".into()).status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            WebError::Unauthorized("x".into()).status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            WebError::NotFound("x".into()).status(),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            WebError::PayloadTooLarge.status(),
            StatusCode::PAYLOAD_TOO_LARGE
        );
        assert_eq!(
            WebError::Unprocessable("x".into()).status(),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        let internal = WebError::Internal(anyhow::anyhow!("password=hunter2"));
        assert_eq!(internal.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(internal.public_message(), None, "never shown");
    }
}
