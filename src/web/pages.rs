//! Server-rendered pages: the landing page (official worksheets by field of biology,
//! then project, with a title search) and the published worksheets under
//! `/w/<namespace>/<project>[/<tag>[/<path>]]`. Plain HTML that works without JavaScript;
//! every page is sent with the Content-Security-Policy of [`crate::worksheet::CSP`].

use std::collections::{BTreeMap, HashMap};

use axum::Json;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde::Deserialize;
use serde_json::json;

use super::{Admin, api_error, html_page, internal};
use crate::app::App;
use crate::storage::CardRow;
use crate::worksheet::render::escape;
use crate::worksheet::{FieldError, Notebook, form_html, parameterize, parameters, validate};

/// Characters escaped in one path segment of a URL.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// `/w/<project>/<tag>/<path>` with each segment escaped.
pub fn worksheet_url(project: &str, tag: Option<&str>, path: Option<&str>) -> String {
    let mut url = String::from("/w");
    for part in project
        .split('/')
        .chain(tag)
        .chain(path.into_iter().flat_map(|p| p.split('/')))
    {
        url.push('/');
        url.extend(utf8_percent_encode(part, SEGMENT));
    }
    url
}

fn page(title: &str, body: &str) -> Response {
    html_page(StatusCode::OK, title, body)
}

fn not_found(what: &str) -> Response {
    html_page(
        StatusCode::NOT_FOUND,
        "Not found",
        &format!(
            "<h1>Not found</h1>
<p>{}</p>
",
            escape(what)
        ),
    )
}

fn server_error(e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "page failed");
    html_page(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Error",
        "<h1>Something went wrong</h1>\n<p>Please try again later.</p>\n",
    )
}

#[derive(Deserialize)]
pub struct Search {
    q: Option<String>,
}

/// `/`: official worksheets grouped by area, then project; newest version of each.
pub async fn landing(State(app): State<App>, Query(search): Query<Search>) -> Response {
    let q = search.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let cards = match app.db.official_cards(q).await {
        Ok(c) => c,
        Err(e) => return server_error(e),
    };
    let mut body = String::from("<h1>Worksheets</h1>\n");
    body.push_str(
        "<form class=\"search\" method=\"get\" action=\"/\" role=\"search\">\
         <label for=\"q\">Search by title</label> ",
    );
    body.push_str(&format!(
        "<input id=\"q\" name=\"q\" type=\"search\" value=\"{}\"> <button type=\"submit\">Search</button></form>\n",
        escape(q.unwrap_or(""))
    ));
    if cards.is_empty() {
        body.push_str(match q {
            Some(_) => "<p class=\"empty\">No worksheet matches this search.</p>\n",
            None => "<p class=\"empty\">No official worksheets are published yet.</p>\n",
        });
    }
    // area -> project -> cards, in the order the query returned them.
    let mut areas: BTreeMap<String, Vec<(String, Vec<&CardRow>)>> = BTreeMap::new();
    for c in &cards {
        let area = c.area.clone().unwrap_or_else(|| "Other".into());
        let projects = areas.entry(area).or_default();
        match projects.iter_mut().find(|(p, _)| *p == c.project) {
            Some((_, list)) => list.push(c),
            None => projects.push((c.project.clone(), vec![c])),
        }
    }
    for (area, projects) in &areas {
        body.push_str(&format!(
            "<section class=\"area\">\n<h2>{}</h2>\n",
            escape(area)
        ));
        for (project, list) in projects {
            let title = list[0]
                .project_title
                .clone()
                .unwrap_or_else(|| project.clone());
            body.push_str(&format!(
                "<h3><a href=\"{}\">{}</a></h3>\n<ul class=\"cards\">\n",
                escape(&worksheet_url(project, None, None)),
                escape(&title)
            ));
            for c in list {
                body.push_str(&format!(
                    "<li class=\"card\"><a href=\"{}\">{}</a>{}<span class=\"version\">{}</span></li>\n",
                    escape(&worksheet_url(&c.project, Some(&c.tag), Some(&c.path))),
                    escape(&c.title),
                    c.description
                        .as_deref()
                        .map(|d| format!("<p>{}</p>", escape(d)))
                        .unwrap_or_default(),
                    escape(&c.tag)
                ));
            }
            body.push_str("</ul>\n");
        }
        body.push_str("</section>\n");
    }
    page("nbforge worksheets", &body)
}

/// The parts of `/w/...`: a project with releases, then maybe a tag and a notebook path.
async fn resolve(
    app: &App,
    rest: &str,
) -> Result<Option<(String, Option<String>, Option<String>)>, crate::storage::DbError> {
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    for k in (2..=parts.len()).rev() {
        let project = parts[..k].join("/");
        if app.db.has_releases(&project).await? {
            let tag = parts.get(k).map(|t| t.to_string());
            let path = (parts.len() > k + 1).then(|| parts[k + 1..].join("/"));
            return Ok(Some((project, tag, path)));
        }
    }
    Ok(None)
}

fn crumbs(project: &str, tag: Option<&str>) -> String {
    let mut out = format!(
        "<nav class=\"crumbs\"><a href=\"/\">Worksheets</a> › <a href=\"{}\">{}</a>",
        escape(&worksheet_url(project, None, None)),
        escape(project)
    );
    if let Some(tag) = tag {
        out.push_str(&format!(
            " › <a href=\"{}\">{}</a>",
            escape(&worksheet_url(project, Some(tag), None)),
            escape(tag)
        ));
    }
    out.push_str("</nav>\n");
    out
}

/// `GET /w/...`: a project's versions, a release's worksheets, or one worksheet.
pub async fn get(
    State(app): State<App>,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let (project, tag, path) = match resolve(&app, &rest).await {
        Ok(Some(r)) => r,
        Ok(None) => return not_found("No published worksheets here."),
        Err(e) => return server_error(e),
    };
    match (tag, path) {
        (None, _) => project_page(&app, &project).await,
        (Some(tag), None) => release_page(&app, &project, &tag).await,
        (Some(tag), Some(path)) => {
            let form: HashMap<String, String> = query
                .as_deref()
                .map(|q| {
                    url::form_urlencoded::parse(q.as_bytes())
                        .into_owned()
                        .collect()
                })
                .unwrap_or_default();
            if form.get("format").map(String::as_str) == Some("ipynb") {
                let mut values = form;
                values.remove("format");
                return download(&app, &project, &tag, &path, &values).await;
            }
            worksheet_page(
                &app,
                &project,
                &tag,
                &path,
                &HashMap::new(),
                &[],
                StatusCode::OK,
            )
            .await
        }
    }
}

/// `POST /w/<project>/<tag>/<path>`: checks the submitted values on the server.
pub async fn post(
    State(app): State<App>,
    Path(rest): Path<String>,
    axum::extract::Form(form): axum::extract::Form<HashMap<String, String>>,
) -> Response {
    let (project, tag, path) = match resolve(&app, &rest).await {
        Ok(Some((p, Some(t), Some(path)))) => (p, t, path),
        Ok(_) => return not_found("No worksheet here."),
        Err(e) => return server_error(e),
    };
    let nb = match load(&app, &project, &tag, &path).await {
        Ok(Some((_, _, Some(nb)))) => nb,
        Ok(_) => return not_found("No worksheet here."),
        Err(r) => return r,
    };
    match validate(&parameters(&nb), &form) {
        Err(errors) => {
            worksheet_page(
                &app,
                &project,
                &tag,
                &path,
                &form,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .await
        }
        Ok(values) => {
            let (sheet, _, _) = match app.db.worksheet(&project, &tag, &path).await {
                Ok(Some(s)) => s,
                Ok(None) => return not_found("No worksheet here."),
                Err(e) => return server_error(e),
            };
            let query: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(values.0.iter().map(|(k, v)| {
                    (
                        k.clone(),
                        form.get(k).cloned().unwrap_or_else(|| v.to_python()),
                    )
                }))
                .append_pair("format", "ipynb")
                .finish();
            let mut body = crumbs(&project, Some(&tag));
            body.push_str(&format!("<h1>{}</h1>\n", escape(&sheet.title)));
            body.push_str("<p class=\"ok\" role=\"status\">These values are valid.</p>\n");
            body.push_str(&crate::worksheet::values_summary_html(&values));
            body.push_str(&format!(
                "<p><a href=\"{}?{}\" download>Download the notebook with these values</a> \
                 (it runs unchanged with <code>jupyter execute</code> or papermill).</p>\n\
                 <p><a href=\"{}\">Back to the worksheet</a></p>\n",
                escape(&worksheet_url(&project, Some(&tag), Some(&path))),
                escape(&query),
                escape(&worksheet_url(&project, Some(&tag), Some(&path))),
            ));
            page(&sheet.title, &body)
        }
    }
}

async fn load(
    app: &App,
    project: &str,
    tag: &str,
    path: &str,
) -> Result<Option<(crate::storage::WorksheetRow, String, Option<Notebook>)>, Response> {
    match app.db.worksheet(project, tag, path).await {
        Ok(Some((sheet, body, bytes))) => {
            if sheet.error.is_some() {
                return Ok(Some((sheet, body, None)));
            }
            match Notebook::from_slice(&bytes).map(Some) {
                Ok(nb) => Ok(Some((sheet, body, nb))),
                Err(e) => Err(server_error(e)),
            }
        }
        Ok(None) => Ok(None),
        Err(e) => Err(server_error(e)),
    }
}

async fn worksheet_page(
    app: &App,
    project: &str,
    tag: &str,
    path: &str,
    submitted: &HashMap<String, String>,
    errors: &[FieldError],
    status: StatusCode,
) -> Response {
    let (sheet, body_html, nb) = match load(app, project, tag, path).await {
        Ok(Some(s)) => s,
        Ok(None) => return not_found("No worksheet here."),
        Err(r) => return r,
    };
    let mut body = crumbs(project, Some(tag));
    body.push_str(&format!("<h1>{}</h1>\n", escape(&sheet.title)));
    if let Some(d) = &sheet.description {
        body.push_str(&format!("<p class=\"description\">{}</p>\n", escape(d)));
    }
    if sheet.error.is_some() || nb.is_none() {
        let err = sheet.error.as_deref().unwrap_or("the notebook is missing");
        body.push_str(&format!(
            "<p class=\"error\" role=\"alert\">This worksheet could not be published: {}</p>\n",
            escape(err)
        ));
    } else if let Some(nb) = &nb {
        let params = parameters(nb);
        if !errors.is_empty() {
            body.push_str(&format!(
                "<p class=\"error\" role=\"alert\">Please correct {} in the form below.</p>\n",
                if errors.len() == 1 {
                    "the value".to_owned()
                } else {
                    format!("{} values", errors.len())
                }
            ));
        }
        if !params.is_empty() {
            body.push_str(&form_html(
                &params,
                submitted,
                errors,
                &worksheet_url(project, Some(tag), Some(path)),
                "post",
            ));
        }
        body.push_str(&body_html);
    }
    html_page(status, &sheet.title, &body)
}

async fn download(
    app: &App,
    project: &str,
    tag: &str,
    path: &str,
    values: &HashMap<String, String>,
) -> Response {
    let nb = match load(app, project, tag, path).await {
        Ok(Some((_, _, Some(nb)))) => nb,
        Ok(_) => return not_found("No worksheet here."),
        Err(r) => return r,
    };
    match validate(&parameters(&nb), values) {
        Ok(v) => {
            let out = parameterize(&nb, &v);
            let name = path
                .rsplit('/')
                .next()
                .unwrap_or("worksheet.ipynb")
                .replace('"', "");
            (
                [
                    (header::CONTENT_TYPE, "application/x-ipynb+json".to_owned()),
                    (
                        header::CONTENT_DISPOSITION,
                        format!("attachment; filename=\"{name}\""),
                    ),
                ],
                out.to_json_pretty(),
            )
                .into_response()
        }
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            (StatusCode::UNPROCESSABLE_ENTITY, list.join("\n")).into_response()
        }
    }
}

async fn project_page(app: &App, project: &str) -> Response {
    let releases = match app.db.releases(project).await {
        Ok(r) => r,
        Err(e) => return server_error(e),
    };
    let Some(newest) = releases.first() else {
        return not_found("No published worksheets here.");
    };
    let title = newest.title.clone().unwrap_or_else(|| project.to_owned());
    let mut body = format!(
        "<nav class=\"crumbs\"><a href=\"/\">Worksheets</a></nav>\n<h1>{}</h1>\n",
        escape(&title)
    );
    body.push_str(&release_list(app, project, &newest.tag).await);
    body.push_str("<h2>Versions</h2>\n<ul class=\"versions\">\n");
    for r in &releases {
        body.push_str(&format!(
            "<li><a href=\"{}\">{}</a>{}</li>\n",
            escape(&worksheet_url(project, Some(&r.tag), None)),
            escape(&r.tag),
            if r.tag == newest.tag { " (newest)" } else { "" }
        ));
    }
    body.push_str("</ul>\n");
    page(&title, &body)
}

async fn release_list(app: &App, project: &str, tag: &str) -> String {
    let sheets = app.db.worksheets(project, tag).await.unwrap_or_default();
    let mut out = format!(
        "<h2>Worksheets in {}</h2>\n<ul class=\"cards\">\n",
        escape(tag)
    );
    for s in &sheets {
        match &s.error {
            None => out.push_str(&format!(
                "<li class=\"card\"><a href=\"{}\">{}</a>{}</li>\n",
                escape(&worksheet_url(project, Some(tag), Some(&s.path))),
                escape(&s.title),
                s.description.as_deref().map(|d| format!("<p>{}</p>", escape(d))).unwrap_or_default()
            )),
            Some(err) => out.push_str(&format!(
                "<li class=\"card failed\"><strong>{}</strong><p class=\"error\">Not published: {}</p></li>\n",
                escape(&s.title),
                escape(err)
            )),
        }
    }
    if sheets.is_empty() {
        out.push_str("<li class=\"empty\">No worksheets in this version.</li>\n");
    }
    out.push_str("</ul>\n");
    out
}

async fn release_page(app: &App, project: &str, tag: &str) -> Response {
    let releases = match app.db.releases(project).await {
        Ok(r) => r,
        Err(e) => return server_error(e),
    };
    let Some(release) = releases.iter().find(|r| r.tag == tag) else {
        return not_found("No such version.");
    };
    let mut body = crumbs(project, None);
    body.push_str(&format!(
        "<h1>{} {}</h1>\n",
        escape(release.title.as_deref().unwrap_or(project)),
        escape(tag)
    ));
    if let Some(err) = &release.error {
        body.push_str(&format!(
            "<p class=\"error\" role=\"alert\">{}</p>\n",
            escape(err)
        ));
    }
    body.push_str(&release_list(app, project, tag).await);
    page(&format!("{project} {tag}"), &body)
}

/// `GET /w` alone: the landing page has the list.
pub async fn index() -> Redirect {
    Redirect::to("/")
}

#[derive(Deserialize)]
pub struct Official {
    official: bool,
    area: Option<String>,
    #[serde(default = "default_forge")]
    forge: String,
}

fn default_forge() -> String {
    "gitlab".into()
}

/// `PUT /api/projects/{project}/official` (admin): list a project on the landing page.
pub async fn set_official(
    _: Admin,
    State(app): State<App>,
    Path(project): Path<String>,
    Json(body): Json<Official>,
) -> Response {
    match app
        .db
        .set_official(&body.forge, &project, body.official, body.area.as_deref())
        .await
    {
        Ok(true) => Json(json!({ "project": project, "official": body.official })).into_response(),
        Ok(false) => api_error(StatusCode::NOT_FOUND, "no such project"),
        Err(e) => internal(e),
    }
}
