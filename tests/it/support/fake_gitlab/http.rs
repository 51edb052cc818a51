//! The fake's HTTP side: routes, token check, outage switch, request log, pagination.

use super::*;

type Shared = Arc<Inner>;

pub(super) fn router(inner: Shared) -> Router {
    let api = Router::new()
        .route("/user", get(current_user))
        .route("/personal_access_tokens/self", get(token_self))
        .route("/projects/{id}", get(get_project))
        .route("/projects/{id}/members/all", get(project_members_all))
        .route("/groups/{id}", get(get_group))
        .route("/groups/{id}/members/all", get(group_members_all))
        .route("/projects/{id}/statuses/{sha}", post(create_status))
        .route(
            "/projects/{id}/repository/commits/{sha}/statuses",
            get(list_statuses),
        )
        .route(
            "/projects/{id}/merge_requests/{iid}/notes",
            get(list_notes).post(create_note),
        )
        .route(
            "/projects/{id}/merge_requests/{iid}/notes/{note_id}",
            put(edit_note),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, "404 Not Found") });
    Router::new()
        .nest("/api/v4", api)
        .merge(super::oauth::router())
        .merge(super::git_http::router())
        .fallback(|| async { error(StatusCode::NOT_FOUND, "404 Not Found") })
        .layer(middleware::from_fn_with_state(inner.clone(), gatekeeper))
        .with_state(inner)
}

/// Record the request, then answer 503 when down and 401 without the right token (the
/// bot's token, or a user's OAuth access token; `/oauth/…` needs neither).
async fn gatekeeper(State(inner): State<Shared>, mut req: Request, next: Next) -> Response {
    let oauth_user = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .and_then(|t| super::oauth::token_user(&inner, t));
    if let Some(id) = oauth_user {
        req.extensions_mut().insert(super::oauth::OAuthUser(id));
    }
    // `/git/…` checks its own (Basic) credentials, as GitLab's git over HTTP does.
    let authorized = oauth_user.is_some()
        || req.uri().path().starts_with("/oauth/")
        || req.uri().path().starts_with("/git/")
        || {
            let headers = req.headers();
            let private = headers
                .get("private-token")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let bearer = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .map(str::to_owned);
            private.as_deref() == Some(inner.token.as_str())
                || bearer.as_deref() == Some(inner.token.as_str())
        };
    let (down, revoked, rate_limited, stall) = {
        let mut s = inner.state();
        s.requests.push(RecordedRequest {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query: req.uri().query().map(str::to_owned),
        });
        let limited = (s.rate_limited > 0).then_some(s.rate_limit_retry_after);
        s.rate_limited = s.rate_limited.saturating_sub(1);
        (s.down, s.revoked, limited, s.stall)
    };
    if let Some(stall) = stall {
        tokio::time::sleep(stall).await;
    }
    if let Some(retry_after) = rate_limited {
        let reset = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            + retry_after;
        return (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("retry-after", retry_after.to_string()),
                ("ratelimit-limit", "600".to_owned()),
                ("ratelimit-observed", "601".to_owned()),
                ("ratelimit-remaining", "0".to_owned()),
                ("ratelimit-reset", reset.to_string()),
                ("ratelimit-name", "throttle_authenticated_api".to_owned()),
            ],
            "Retry later\n",
        )
            .into_response();
    }
    if down {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::CONTENT_TYPE, "text/html")],
            "<html><body><h1>502 Whoops, GitLab is taking too much time to respond.</h1></body></html>",
        )
            .into_response();
    }
    if !authorized || revoked {
        return error(StatusCode::UNAUTHORIZED, "401 Unauthorized");
    }
    next.run(req).await
}

/// An error answer, kept small so it can travel in a `Result`.
#[derive(Debug)]
pub(super) struct Fail(StatusCode, Value);

impl Fail {
    fn not_found(what: &str) -> Fail {
        Fail(
            StatusCode::NOT_FOUND,
            json!({ "message": format!("404 {what} Not Found") }),
        )
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        (self.0, axum::Json(self.1)).into_response()
    }
}

pub(super) fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "message": message }))).into_response()
}

fn not_found(what: &str) -> Response {
    error(StatusCode::NOT_FOUND, &format!("404 {what} Not Found"))
}

fn bad_request(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::Json(json!({ "error": message })),
    )
        .into_response()
}

/// Form or JSON body, merged over query parameters.
fn params(headers: &HeaderMap, query: Option<&str>, body: &[u8]) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            for (k, v) in map {
                let v = match v {
                    Value::String(s) => s,
                    Value::Null => continue,
                    other => other.to_string(),
                };
                out.insert(k, v);
            }
        }
    } else {
        out.extend(url::form_urlencoded::parse(body).into_owned());
    }
    out
}

fn query_params(query: Option<&str>) -> HashMap<String, String> {
    query
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// The page of `items` that `page` and `per_page` (at most 100, `default_per_page`
/// when absent) in `query` ask for, with the page number and size used.
pub(in crate::support) fn page_of(
    items: Vec<Value>,
    query: Option<&str>,
    default_per_page: usize,
) -> (Vec<Value>, usize, usize) {
    let q = query_params(query);
    let per_page = q
        .get("per_page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(default_per_page)
        .clamp(1, 100);
    let page = q
        .get("page")
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let chunk = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    (chunk, page, per_page)
}

/// One page of `items` with GitLab's offset-pagination headers.
fn paginate(items: Vec<Value>, query: Option<&str>) -> Response {
    let total = items.len();
    let (chunk, page, per_page) = page_of(items, query, 20);
    let total_pages = total.div_ceil(per_page).max(1);
    let mut resp = axum::Json(Value::Array(chunk)).into_response();
    let h = resp.headers_mut();
    let num = |n: usize| HeaderValue::from_str(&n.to_string()).expect("number header");
    h.insert("x-page", num(page));
    h.insert("x-per-page", num(per_page));
    h.insert("x-total", num(total));
    h.insert("x-total-pages", num(total_pages));
    h.insert(
        "x-next-page",
        if page < total_pages {
            num(page + 1)
        } else {
            HeaderValue::from_static("")
        },
    );
    h.insert(
        "x-prev-page",
        if page > 1 {
            num(page - 1)
        } else {
            HeaderValue::from_static("")
        },
    );
    resp
}

fn project_json(s: &FakeState, p: &FakeProject, base: &str) -> Value {
    let repo = p.repo();
    let namespace = match s.find_group(&p.namespace) {
        Some(g) => json!({
            "id": g.id, "name": g.name, "path": g.full_path.rsplit('/').next().unwrap_or(&g.full_path),
            "kind": "group", "full_path": g.full_path, "parent_id": g.parent_id,
            "web_url": format!("{base}/groups/{}", g.full_path),
        }),
        None => {
            let u = s.users.iter().find(|u| u.username == p.namespace);
            json!({
                "id": u.map(|u| u.id), "name": u.map(|u| u.name.clone()), "path": p.namespace,
                "kind": "user", "full_path": p.namespace, "parent_id": Value::Null,
                "web_url": format!("{base}/{}", p.namespace),
            })
        }
    };
    let mut v = json!({
        "id": p.id,
        "description": Value::Null,
        "name": p.name,
        "name_with_namespace": p.path_with_namespace.replace('/', " / "),
        "path": p.path,
        "path_with_namespace": p.path_with_namespace,
        "created_at": "2024-01-01T00:00:00.000Z",
        "default_branch": default_branch(&repo),
        "tag_list": [],
        "topics": [],
        "ssh_url_to_repo": ssh_url(base, p),
        "http_url_to_repo": p.http_url_to_repo,
        "web_url": p.web_url,
        "readme_url": Value::Null,
        "avatar_url": Value::Null,
        "forks_count": s.projects.iter().filter(|x| x.forked_from == Some(p.id)).count(),
        "star_count": 0,
        "last_activity_at": "2024-01-01T00:00:00.000Z",
        "namespace": namespace,
        "visibility": p.visibility,
        "empty_repo": repo.is_empty().unwrap_or(true),
        "archived": false,
        "import_status": "finished",
    });
    if let Some(parent) = p
        .forked_from
        .and_then(|id| s.projects.iter().find(|x| x.id == id))
    {
        v["forked_from_project"] = json!({
            "id": parent.id,
            "name": parent.name,
            "path": parent.path,
            "path_with_namespace": parent.path_with_namespace,
            "web_url": parent.web_url,
            "http_url_to_repo": parent.http_url_to_repo,
        });
    }
    v
}

fn user_json(u: &FakeUser, base: &str) -> Value {
    json!({
        "id": u.id,
        "username": u.username,
        "name": u.name,
        "state": "active",
        "locked": false,
        "avatar_url": avatar(u),
        "web_url": format!("{base}/{}", u.username),
    })
}

#[expect(clippy::too_many_arguments, reason = "mirrors the API's fields")]
pub(super) fn create_mr(
    s: &mut FakeState,
    source_id: i64,
    target_id: i64,
    source_branch: &str,
    target_branch: &str,
    title: &str,
    description: &str,
    author_id: i64,
) -> Result<FakeMergeRequest, Fail> {
    let source = s
        .projects
        .iter()
        .find(|p| p.id == source_id)
        .cloned()
        .ok_or_else(|| Fail::not_found("Project"))?;
    let target = s
        .projects
        .iter()
        .find(|p| p.id == target_id)
        .cloned()
        .ok_or_else(|| Fail::not_found("Project"))?;
    if title.is_empty() {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            json!({"error": "title is missing"}),
        ));
    }
    let exists =
        |p: &FakeProject, b: &str| p.repo().find_reference(&format!("refs/heads/{b}")).is_ok();
    if !exists(&source, source_branch) {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            json!({"message": [format!("Source branch \"{source_branch}\" does not exist")]}),
        ));
    }
    if !exists(&target, target_branch) {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            json!({"message": [format!("Target branch \"{target_branch}\" does not exist")]}),
        ));
    }
    if source_id == target_id && source_branch == target_branch {
        return Err(Fail(
            StatusCode::BAD_REQUEST,
            json!({"message": ["You can't use same project/branch for source and target"]}),
        ));
    }
    if let Some(open) = s.merge_requests.iter().find(|m| {
        m.state == "opened"
            && m.source_project_id == source_id
            && m.project_id == target_id
            && m.source_branch == source_branch
            && m.target_branch == target_branch
    }) {
        return Err(Fail(
            StatusCode::CONFLICT,
            json!({"message": [format!(
                "Another open merge request already exists for this source branch: !{}", open.iid
            )]}),
        ));
    }
    let iid = s
        .merge_requests
        .iter()
        .filter(|m| m.project_id == target_id)
        .map(|m| m.iid)
        .max()
        .unwrap_or(0)
        + 1;
    let mr = FakeMergeRequest {
        id: s.id(),
        iid,
        project_id: target_id,
        source_project_id: source_id,
        source_branch: source_branch.to_owned(),
        target_branch: target_branch.to_owned(),
        title: title.to_owned(),
        description: description.to_owned(),
        author_id,
        state: "opened".into(),
        web_url: format!("{}/-/merge_requests/{iid}", target.web_url),
    };
    s.merge_requests.push(mr.clone());
    Ok(mr)
}

async fn current_user(
    State(inner): State<Shared>,
    oauth_user: Option<axum::Extension<super::oauth::OAuthUser>>,
) -> Response {
    let s = inner.state();
    let id = oauth_user.map_or(s.token_user, |u| u.0.0);
    let u = s.user(id).cloned().expect("token user");
    let mut v = user_json(&u, &inner.base_url);
    v["email"] = json!(u.email);
    v["bot"] = json!(false);
    v["is_admin"] = json!(false);
    v["created_at"] = json!("2024-01-01T00:00:00.000Z");
    axum::Json(v).into_response()
}

async fn token_self(State(inner): State<Shared>) -> Response {
    let s = inner.state();
    match &s.token_scopes {
        None => not_found(""),
        Some(scopes) => axum::Json(json!({
            "id": 1,
            "name": "nbforge",
            "revoked": false,
            "created_at": "2024-01-01T00:00:00.000Z",
            "description": "",
            "scopes": scopes,
            "user_id": s.token_user,
            "last_used_at": now_iso(),
            "active": true,
            "expires_at": Value::Null,
        }))
        .into_response(),
    }
}

async fn get_project(State(inner): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let s = inner.state();
    match s.find_project(&id) {
        Some(p) => axum::Json(project_json(&s, p, &inner.base_url)).into_response(),
        None => not_found("Project"),
    }
}

async fn create_status(
    State(inner): State<Shared>,
    UrlPath((id, sha)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&headers, query.as_deref(), &body);
    let mut s = inner.state();
    let Some(project) = s.find_project(&id).cloned() else {
        return not_found("Project");
    };
    let repo = project.repo();
    let commit = Oid::from_str(&sha)
        .ok()
        .and_then(|o| repo.find_commit(o).ok());
    let Some(commit) = commit else {
        return not_found("Commit");
    };
    let Some(state) = p.get("state").cloned() else {
        return bad_request("state is missing");
    };
    if ![
        "pending", "running", "success", "failed", "canceled", "skipped",
    ]
    .contains(&state.as_str())
    {
        return bad_request("state does not have a valid value");
    }
    let name = p
        .get("name")
        .or_else(|| p.get("context"))
        .cloned()
        .unwrap_or_else(|| "default".to_owned());
    let ref_name = p.get("ref").cloned().or_else(|| default_branch(&repo));
    for (field, max) in [("target_url", 255), ("description", 255), ("ref", 255)] {
        if p.get(field).is_some_and(|v| v.chars().count() > max) {
            return bad_request(&format!(
                "{field} is too long (maximum is {max} characters)"
            ));
        }
    }
    // GitLab refuses to move a still-active status to the state it is already in.
    if let Some(last) = s.statuses.iter().rev().find(|st| {
        st.project_id == project.id && st.sha == sha && st.name == name && st.ref_name == ref_name
    }) && last.state == state
        && (state == "pending" || state == "running")
    {
        let event = if state == "pending" { "enqueue" } else { "run" };
        return bad_request(&format!(
            "Cannot transition status via :{event} from :{state}"
        ));
    }
    let status = RecordedStatus {
        id: s.id(),
        project_id: project.id,
        sha: commit.id().to_string(),
        state,
        name,
        ref_name,
        target_url: p.get("target_url").cloned(),
        description: p.get("description").cloned(),
    };
    s.statuses.push(status.clone());
    let author = s.user(s.token_user).cloned().expect("token user");
    (
        StatusCode::CREATED,
        axum::Json(status_json(&status, &author, &inner.base_url)),
    )
        .into_response()
}

fn status_json(st: &RecordedStatus, author: &FakeUser, base: &str) -> Value {
    json!({
        "id": st.id,
        "sha": st.sha,
        "ref": st.ref_name,
        "status": st.state,
        "name": st.name,
        "target_url": st.target_url,
        "description": st.description,
        "created_at": now_iso(),
        "started_at": Value::Null,
        "finished_at": Value::Null,
        "allow_failure": false,
        "coverage": Value::Null,
        "pipeline_id": Value::Null,
        "author": user_json(author, base),
    })
}

async fn list_statuses(
    State(inner): State<Shared>,
    UrlPath((id, sha)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let s = inner.state();
    let Some(project) = s.find_project(&id).cloned() else {
        return not_found("Project");
    };
    let author = s.user(s.token_user).cloned().expect("token user");
    let items = s
        .statuses
        .iter()
        .filter(|st| st.project_id == project.id && st.sha == sha)
        .map(|st| status_json(st, &author, &inner.base_url))
        .collect();
    paginate(items, query.as_deref())
}

fn note_json(s: &FakeState, n: &RecordedNote, base: &str) -> Value {
    let author = s
        .user(n.author_id)
        .map(|u| user_json(u, base))
        .unwrap_or(Value::Null);
    let mr_id = s
        .merge_requests
        .iter()
        .find(|m| m.project_id == n.project_id && m.iid == n.mr_iid)
        .map(|m| m.id);
    json!({
        "id": n.id,
        "type": Value::Null,
        "body": n.body,
        "attachment": Value::Null,
        "author": author,
        "created_at": "2024-01-01T00:00:00.000Z",
        "updated_at": now_iso(),
        "system": false,
        "noteable_id": mr_id,
        "noteable_type": "MergeRequest",
        "project_id": n.project_id,
        "noteable_iid": n.mr_iid,
        "resolvable": false,
        "confidential": false,
        "internal": false,
    })
}

fn find_mr(s: &FakeState, project_key: &str, iid: &str) -> Result<(FakeProject, i64), Fail> {
    let project = s
        .find_project(project_key)
        .cloned()
        .ok_or_else(|| Fail::not_found("Project"))?;
    let iid: i64 = iid.parse().map_err(|_| Fail::not_found("Merge Request"))?;
    if !s
        .merge_requests
        .iter()
        .any(|m| m.project_id == project.id && m.iid == iid)
    {
        return Err(Fail::not_found("Merge Request"));
    }
    Ok((project, iid))
}

async fn list_notes(
    State(inner): State<Shared>,
    UrlPath((id, iid)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
) -> Response {
    let s = inner.state();
    let (project, iid) = match find_mr(&s, &id, &iid) {
        Ok(x) => x,
        Err(f) => return f.into_response(),
    };
    // GitLab's default order is newest first (`order_by=created_at`, `sort=desc`).
    let mut notes: Vec<&RecordedNote> = s
        .notes
        .iter()
        .filter(|n| n.project_id == project.id && n.mr_iid == iid)
        .collect();
    let asc = query_params(query.as_deref())
        .get("sort")
        .map(String::as_str)
        == Some("asc");
    if !asc {
        notes.reverse();
    }
    let items = notes
        .into_iter()
        .map(|n| note_json(&s, n, &inner.base_url))
        .collect();
    paginate(items, query.as_deref())
}

async fn create_note(
    State(inner): State<Shared>,
    UrlPath((id, iid)): UrlPath<(String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&headers, query.as_deref(), &body);
    let mut s = inner.state();
    let (project, iid) = match find_mr(&s, &id, &iid) {
        Ok(x) => x,
        Err(f) => return f.into_response(),
    };
    let Some(text) = p.get("body").filter(|b| !b.is_empty()).cloned() else {
        return bad_request("body is missing");
    };
    let author = s.user(s.token_user).cloned().expect("token user");
    let note = RecordedNote {
        id: s.id(),
        project_id: project.id,
        mr_iid: iid,
        body: text,
        author_id: author.id,
        author: author.username.clone(),
        edits: 0,
    };
    s.notes.push(note.clone());
    (
        StatusCode::CREATED,
        axum::Json(note_json(&s, &note, &inner.base_url)),
    )
        .into_response()
}

async fn edit_note(
    State(inner): State<Shared>,
    UrlPath((id, iid, note_id)): UrlPath<(String, String, String)>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let p = params(&headers, query.as_deref(), &body);
    let mut s = inner.state();
    let (project, iid) = match find_mr(&s, &id, &iid) {
        Ok(x) => x,
        Err(f) => return f.into_response(),
    };
    let Some(text) = p.get("body").filter(|b| !b.is_empty()).cloned() else {
        return bad_request("body is missing");
    };
    let token_user = s.token_user;
    let Some(note) = s.notes.iter_mut().find(|n| {
        n.project_id == project.id && n.mr_iid == iid && note_id.parse::<i64>().ok() == Some(n.id)
    }) else {
        return not_found("Note");
    };
    if note.author_id != token_user {
        return error(StatusCode::FORBIDDEN, "403 Forbidden");
    }
    note.body = text;
    note.edits += 1;
    let note = note.clone();
    axum::Json(note_json(&s, &note, &inner.base_url)).into_response()
}

/// A member as `/members/all` lists one.
fn member_json(u: &FakeUser, level: i64, base: &str) -> Value {
    let mut v = user_json(u, base);
    v["access_level"] = json!(level);
    v["expires_at"] = Value::Null;
    v["created_at"] = json!("2024-01-01T00:00:00.000Z");
    v["membership_state"] = json!("active");
    v["group_saml_identity"] = Value::Null;
    v
}

/// One page of members, with GitLab's `X-*` headers and its `Link` header.
fn members_page(
    members: Vec<(FakeUser, i64)>,
    query: Option<&str>,
    base: &str,
    path: &str,
) -> Response {
    let items: Vec<Value> = members
        .iter()
        .map(|(u, level)| member_json(u, *level, base))
        .collect();
    let mut resp = paginate(items, query);
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
    };
    let (per_page, next, last) = (
        header("x-per-page").unwrap_or(20),
        header("x-next-page"),
        header("x-total-pages").unwrap_or(1),
    );
    let link = |page: usize, rel: &str| {
        format!("<{base}/api/v4/{path}?page={page}&per_page={per_page}>; rel=\"{rel}\"")
    };
    let mut links = Vec::new();
    if let Some(next) = next {
        links.push(link(next, "next"));
    }
    links.push(link(1, "first"));
    links.push(link(last, "last"));
    resp.headers_mut().insert(
        header::LINK,
        HeaderValue::from_str(&links.join(", ")).expect("link header"),
    );
    resp
}

async fn project_members_all(
    State(inner): State<Shared>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let s = inner.state();
    let Some(p) = s.find_project(&id).cloned() else {
        return not_found("Project");
    };
    let members = s.effective_members(&s.project_sources(&p));
    let path = format!("projects/{}/members/all", p.id);
    members_page(members, query.as_deref(), &inner.base_url, &path)
}

async fn get_group(State(inner): State<Shared>, UrlPath(id): UrlPath<String>) -> Response {
    let s = inner.state();
    let Some(g) = s.find_group(&id).cloned() else {
        return not_found("Group");
    };
    axum::Json(json!({
        "id": g.id,
        "name": g.name,
        "path": g.full_path.rsplit('/').next().unwrap_or(&g.full_path),
        "full_name": g.full_path.replace('/', " / "),
        "full_path": g.full_path,
        "parent_id": g.parent_id,
        "visibility": "private",
        "web_url": format!("{}/groups/{}", inner.base_url, g.full_path),
    }))
    .into_response()
}

async fn group_members_all(
    State(inner): State<Shared>,
    UrlPath(id): UrlPath<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let s = inner.state();
    let Some(g) = s.find_group(&id).cloned() else {
        return not_found("Group");
    };
    let sources: Vec<(String, i64)> = s
        .group_chain(&g.full_path)
        .into_iter()
        .map(|g| ("group".to_owned(), g.id))
        .collect();
    let members = s.effective_members(&sources);
    let path = format!("groups/{}/members/all", g.id);
    members_page(members, query.as_deref(), &inner.base_url, &path)
}
