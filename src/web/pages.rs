//! Server-rendered pages: the landing page (official worksheets by field of biology,
//! then project, with a title search) and the published worksheets under
//! `/w/<namespace>/<project>[/<tag>[/<path>]]`. Plain HTML from the templates that works
//! without JavaScript.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::{FormRejection, JsonRejection};
use axum::extract::{Form, OriginalUri, Path, Query, RawQuery, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Redirect, Response};
use minijinja::context;
use minijinja::value::Serde;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::form::{DataChoice, FormView};
use super::sheets::{Parsed, SheetCache, SheetKey};
use super::templates::{Templates, notebook_html, values_view};
use super::{Admin, WebError};
use crate::access::{Action, Viewer};
use crate::app::App;
use crate::events::ForgeKind;
use crate::storage::{CardRow, WorksheetRow};
use crate::urls;
use crate::worksheet::{FieldError, parameterize, validate};

#[derive(Deserialize)]
pub struct Search {
    q: Option<String>,
}

/// Official worksheets of one field of biology, by project.
#[derive(Serialize)]
pub struct AreaView<'a> {
    pub name: String,
    pub projects: Vec<ProjectCards<'a>>,
}

/// One project's cards on the landing page.
#[derive(Serialize)]
pub struct ProjectCards<'a> {
    pub path: String,
    pub title: String,
    pub cards: Vec<&'a CardRow>,
}

/// Groups cards by area (sorted), then project (in the order given).
pub fn areas(cards: &[CardRow]) -> Vec<AreaView<'_>> {
    let mut areas: BTreeMap<String, Vec<ProjectCards<'_>>> = BTreeMap::new();
    for c in cards {
        let area = c.area.clone().unwrap_or_else(|| "Other".into());
        let projects = areas.entry(area).or_default();
        match projects.iter_mut().find(|p| p.path == c.project) {
            Some(p) => p.cards.push(c),
            None => projects.push(ProjectCards {
                path: c.project.clone(),
                title: c.project_title.clone().unwrap_or_else(|| c.project.clone()),
                cards: vec![c],
            }),
        }
    }
    areas
        .into_iter()
        .map(|(name, projects)| AreaView { name, projects })
        .collect()
}

/// The landing page for a search `q` and the cards it found.
pub fn landing_page(
    templates: &Templates,
    q: Option<&str>,
    cards: &[CardRow],
) -> Result<Response, WebError> {
    templates.page(
        StatusCode::OK,
        "landing.html",
        context! {
            title => "nbforge worksheets",
            q,
            areas => Serde(areas(cards)),
        },
    )
}

/// `/`: official worksheets grouped by area, then project; newest version of each.
pub async fn landing(
    State(app): State<App>,
    State(templates): State<Arc<Templates>>,
    viewer: Viewer,
    Query(search): Query<Search>,
) -> Result<Response, WebError> {
    let q = search.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let mut cards = app.db.official_cards(q).await?;
    // Only what the viewer may see: one check per project.
    let mut visible: HashMap<(ForgeKind, String), bool> = HashMap::new();
    for card in &cards {
        if let std::collections::hash_map::Entry::Vacant(slot) =
            visible.entry((card.forge, card.project.clone()))
        {
            slot.insert(
                app.access
                    .may_view(&viewer, card.forge, &card.project)
                    .await?,
            );
        }
    }
    cards.retain(|c| visible[&(c.forge, c.project.clone())]);
    landing_page(&templates, q, &cards)
}

/// Lets the request through when the viewer may do `action` in the project published
/// under `project`; otherwise a login redirect or a 404.
async fn gate(
    app: &App,
    viewer: &Viewer,
    uri: &Uri,
    project: &str,
    action: Action,
) -> Result<(), WebError> {
    let Some(forge) = app.db.release_forge(project).await? else {
        return Err(WebError::NotFound("No published worksheets here.".into()));
    };
    super::auth::require(app, viewer, uri, action, forge, project).await
}

/// The most path segments a `/w/...` URL may have, and the most a project path may have
/// (GitLab nests groups 20 deep).
const MAX_SEGMENTS: usize = 64;
const MAX_PROJECT_SEGMENTS: usize = 21;

/// The parts of `/w/...`: a project with releases, then maybe a tag (which may itself hold
/// `/`) and a notebook path. At most [`MAX_PROJECT_SEGMENTS`] lookups, whatever the URL.
pub(super) async fn resolve(
    app: &App,
    rest: &str,
) -> Result<(String, Option<String>, Option<String>), WebError> {
    let not_found = || WebError::NotFound("No published worksheets here.".into());
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    if parts.len() > MAX_SEGMENTS {
        return Err(WebError::BadRequest(
            "This address has too many parts to be a worksheet.".into(),
        ));
    }
    for k in (2..=parts.len().min(MAX_PROJECT_SEGMENTS)).rev() {
        let project = parts[..k].join("/");
        if !app.db.has_releases(&project).await? {
            continue;
        }
        let after = &parts[k..];
        if after.is_empty() {
            return Ok((project, None, None));
        }
        // The longest published tag the rest of the path starts with; else its first segment.
        let releases = app.db.releases(&project).await?;
        let tag_len = releases
            .iter()
            .map(|r| r.tag.split('/').collect::<Vec<_>>())
            .filter(|t| t.len() <= after.len() && after[..t.len()] == t[..])
            .map(|t| t.len())
            .max()
            .unwrap_or(1);
        let tag = after[..tag_len].join("/");
        let path = (after.len() > tag_len).then(|| after[tag_len..].join("/"));
        return Ok((project, Some(tag), path));
    }
    Err(not_found())
}

fn no_worksheet() -> WebError {
    WebError::NotFound("No worksheet here.".into())
}

/// `GET /w/...`: a project's versions, a release's worksheets, or one worksheet.
pub async fn get(
    State(app): State<App>,
    State(templates): State<Arc<Templates>>,
    State(cache): State<Arc<SheetCache>>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    Path(rest): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, WebError> {
    let (project, tag, path) = resolve(&app, &rest).await?;
    gate(&app, &viewer, &uri, &project, Action::ViewWorksheets).await?;
    let (tag, path) = match (tag, path) {
        (None, _) => return project_page(&app, &templates, &project).await,
        (Some(tag), None) => return release_page(&app, &templates, &project, &tag).await,
        (Some(tag), Some(path)) => (tag, path),
    };
    let mut form: HashMap<String, String> = query
        .as_deref()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    if form.get("format").map(String::as_str) == Some("ipynb") {
        form.remove("format");
        return download(&app, &cache, &project, &tag, &path, &form).await;
    }
    let sheet = load(&app, &cache, &project, &tag, &path).await?;
    let data = sheet.data_choice(&app, &viewer).await;
    sheet.page_with(
        &templates,
        &HashMap::new(),
        &[],
        StatusCode::OK,
        data.as_ref(),
    )
}

/// `POST /w/<project>/<tag>/<path>`: checks the submitted values on the server.
#[expect(clippy::too_many_arguments, reason = "one request's parts")]
pub async fn post(
    State(app): State<App>,
    State(templates): State<Arc<Templates>>,
    State(cache): State<Arc<SheetCache>>,
    viewer: Viewer,
    OriginalUri(uri): OriginalUri,
    headers: axum::http::HeaderMap,
    Path(rest): Path<String>,
    form: Result<Form<HashMap<String, String>>, FormRejection>,
) -> Result<Response, WebError> {
    let Form(mut form) = form?;
    form.remove(super::auth::CSRF_FIELD);
    let (project, tag, path) = match resolve(&app, &rest).await? {
        (p, Some(t), Some(path)) => (p, t, path),
        _ => return Err(no_worksheet()),
    };
    gate(&app, &viewer, &uri, &project, Action::ViewWorksheets).await?;
    let sheet = load(&app, &cache, &project, &tag, &path).await?;
    let parsed = sheet.parsed.as_ref().ok_or_else(no_worksheet)?;
    // Run it when the viewer may; otherwise the values are checked and offered as a download.
    if may_run(&app, &viewer, &project).await? {
        // A visitor's run is known by their visitor cookie (a new visitor gets one).
        let (visitor, cookie) = match viewer.user {
            None => {
                let (key, cookie) = super::visitor_runs::visitor(&app, &headers);
                (Some(key), cookie)
            }
            Some(_) => (None, None),
        };
        let what = super::runs::Request {
            project: &project,
            tag: &tag,
            path: &path,
            visitor: visitor.as_deref(),
        };
        return match super::runs::start(&app, &cache, &viewer, &uri, &what, &form).await? {
            Ok(run) => {
                let mut res = Redirect::to(&format!("/runs/{}", run.id)).into_response();
                super::runs::set_cookie(&mut res, cookie.as_deref());
                Ok(res)
            }
            Err(errors) => {
                let data = sheet.data_choice(&app, &viewer).await;
                sheet.page_with(
                    &templates,
                    &form,
                    &errors,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    data.as_ref(),
                )
            }
        };
    }
    let values = match validate(&parsed.params, &form) {
        Ok(values) => values,
        Err(errors) => {
            return sheet.page(&templates, &form, &errors, StatusCode::UNPROCESSABLE_ENTITY);
        }
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
    templates.page(
        StatusCode::OK,
        "checked.html",
        context! {
            title => sheet.row.title.as_str(),
            project,
            tag,
            path,
            query,
            values => Serde(values_view(&values)),
        },
    )
}

/// Whether the viewer may run worksheets of the project here: logged in, and allowed
/// `RunWorksheet` there; or a visitor allowed to run the project's official worksheets
/// (`NBFORGE_ANONYMOUS_RUNS`).
async fn may_run(app: &App, viewer: &Viewer, project: &str) -> Result<bool, WebError> {
    let Some(forge) = app.db.release_forge(project).await? else {
        return Ok(false);
    };
    if viewer.user.is_none() {
        return super::visitor_runs::may_run(app, viewer, forge, project).await;
    }
    Ok(app
        .access
        .check(viewer, Action::RunWorksheet, forge, project)
        .await?
        .is_ok())
}

/// A published worksheet: its row, its rendered body, and its parsed notebook unless it
/// failed to publish.
pub struct Sheet {
    pub row: WorksheetRow,
    pub body_html: String,
    pub parsed: Option<Arc<Parsed>>,
}

pub(super) async fn load(
    app: &App,
    cache: &SheetCache,
    project: &str,
    tag: &str,
    path: &str,
) -> Result<Sheet, WebError> {
    let (row, body_html) = app
        .db
        .worksheet_page(project, tag, path)
        .await?
        .ok_or_else(no_worksheet)?;
    if row.error.is_some() {
        return Ok(Sheet {
            row,
            body_html,
            parsed: None,
        });
    }
    let key = SheetKey {
        forge: row.forge,
        project: row.project.clone(),
        tag: row.tag.clone(),
        path: row.path.clone(),
        published_at: row.published_at,
    };
    let parsed = match cache.get(&key) {
        Some(p) => p,
        None => {
            let bytes = app
                .db
                .worksheet_notebook(project, tag, path)
                .await?
                .ok_or_else(no_worksheet)?;
            let size = bytes.len();
            let parsed = tokio::task::spawn_blocking(move || Parsed::from_bytes(&bytes))
                .await
                .map_err(|e| WebError::Internal(anyhow::anyhow!("parsing a worksheet: {e}")))??;
            let parsed = Arc::new(parsed);
            cache.insert(key, parsed.clone(), size);
            parsed
        }
    };
    Ok(Sheet {
        row,
        body_html,
        parsed: Some(parsed),
    })
}

impl Sheet {
    /// The worksheet page: its outputs and its form with the `submitted` values and
    /// their `errors`.
    pub fn page(
        &self,
        templates: &Templates,
        submitted: &HashMap<String, String>,
        errors: &[FieldError],
        status: StatusCode,
    ) -> Result<Response, WebError> {
        self.page_with(templates, submitted, errors, status, None)
    }

    /// The viewer's `~/data/` files when the form has file parameters (see `web::data`).
    pub async fn data_choice(&self, app: &App, viewer: &Viewer) -> Option<DataChoice> {
        let params = &self.parsed.as_ref()?.params;
        super::data::choice(app, viewer, params).await
    }

    /// [`Sheet::page`], with the viewer's `~/data/` offered to file parameters.
    pub fn page_with(
        &self,
        templates: &Templates,
        submitted: &HashMap<String, String>,
        errors: &[FieldError],
        status: StatusCode,
        data: Option<&DataChoice>,
    ) -> Result<Response, WebError> {
        let row = &self.row;
        let problem = match (&row.error, &self.parsed) {
            (Some(e), _) => Some(e.as_str()),
            (None, None) => Some("the notebook is missing"),
            (None, Some(_)) => None,
        };
        let action = urls::worksheet(&row.project, Some(&row.tag), Some(&row.path));
        let params: &[crate::worksheet::Parameter] =
            self.parsed.as_ref().map_or(&[], |p| &p.params);
        let mut form = FormView::new(params, submitted, errors, &action, "post");
        if let Some(data) = data {
            form = form.with_data(data);
        }
        templates.page(
            status,
            "worksheet.html",
            context! {
                title => row.title.as_str(),
                project => row.project.as_str(),
                tag => row.tag.as_str(),
                sheet => Serde(row),
                problem,
                error_count => errors.len(),
                form => Serde(form),
                notebook => notebook_html(self.body_html.clone()),
            },
        )
    }
}

async fn download(
    app: &App,
    cache: &SheetCache,
    project: &str,
    tag: &str,
    path: &str,
    values: &HashMap<String, String>,
) -> Result<Response, WebError> {
    let sheet = load(app, cache, project, tag, path).await?;
    let parsed = sheet.parsed.ok_or_else(no_worksheet)?;
    match validate(&parsed.params, values) {
        Ok(v) => {
            let out = parameterize(&parsed.notebook, &v);
            Ok((
                [
                    (header::CONTENT_TYPE, "application/x-ipynb+json".to_owned()),
                    (header::CONTENT_DISPOSITION, ipynb_disposition(path)),
                ],
                out.to_json_pretty(),
            )
                .into_response())
        }
        Err(errors) => {
            let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
            Err(WebError::Unprocessable(list.join("\n")))
        }
    }
}

/// `Content-Disposition` for a notebook download (RFC 6266): an ASCII `filename` with
/// anything unsafe replaced, the exact name as UTF-8 in `filename*`, and always `.ipynb`.
fn ipynb_disposition(path: &str) -> String {
    let base = path.rsplit('/').next().unwrap_or_default();
    let stem = base.strip_suffix(".ipynb").unwrap_or(base);
    let stem = if stem.trim().is_empty() {
        "worksheet"
    } else {
        stem
    };
    let name = format!("{stem}.ipynb");
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ' ' | '(' | ')') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(&name, percent_encoding::NON_ALPHANUMERIC);
    format!("attachment; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

async fn project_page(
    app: &App,
    templates: &Templates,
    project: &str,
) -> Result<Response, WebError> {
    let releases = app.db.releases(project).await?;
    let Some(newest) = releases.first() else {
        return Err(WebError::NotFound("No published worksheets here.".into()));
    };
    let sheets = app.db.worksheets(project, &newest.tag).await?;
    let launch = crate::urls::launch_path(newest.forge, project, &newest.tag);
    templates.page(
        StatusCode::OK,
        "project.html",
        context! {
            title => newest.title.as_deref().unwrap_or(project),
            project,
            newest => newest.tag.as_str(),
            sheets => Serde(sheets),
            releases => Serde(&releases),
            launch,
        },
    )
}

async fn release_page(
    app: &App,
    templates: &Templates,
    project: &str,
    tag: &str,
) -> Result<Response, WebError> {
    let releases = app.db.releases(project).await?;
    let Some(release) = releases.iter().find(|r| r.tag == tag) else {
        return Err(WebError::NotFound("No such version.".into()));
    };
    let sheets = app.db.worksheets(project, tag).await?;
    templates.page(
        StatusCode::OK,
        "release.html",
        context! {
            title => format!("{project} {tag}"),
            heading => release.title.as_deref().unwrap_or(project),
            project,
            tag,
            error => release.error.as_deref(),
            sheets => Serde(sheets),
        },
    )
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
    body: Result<Json<Official>, JsonRejection>,
) -> Result<Response, WebError> {
    let Json(body) = body?;
    if app
        .db
        .set_official(&body.forge, &project, body.official, body.area.as_deref())
        .await?
    {
        Ok(Json(json!({ "project": project, "official": body.official })).into_response())
    } else {
        Err(WebError::NotFound("no such project".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::web::templates::testing::{main, text};
    use crate::worksheet::{Notebook, parameters};

    /// Finding 21: the download's name came from the path as given, without RFC 6266's
    /// `filename*`, and without the `.ipynb` extension when the path lacked it.
    #[test]
    fn finding_21_content_disposition_is_not_rfc_6266() {
        assert_eq!(
            ipynb_disposition("lab/growth.ipynb"),
            "attachment; filename=\"growth.ipynb\"; filename*=UTF-8''growth%2Eipynb"
        );
        let d = ipynb_disposition("analyses/Wachstum \"größe\";.ipynb");
        assert!(
            d.starts_with("attachment; filename=\"Wachstum _gr__e__.ipynb\"; "),
            "{d}"
        );
        assert!(
            d.contains("filename*=UTF-8''Wachstum%20%22gr%C3%B6%C3%9Fe%22%3B%2Eipynb"),
            "{d}"
        );
        assert!(ipynb_disposition("notes.txt").contains("filename=\"notes.txt.ipynb\""));
        assert!(ipynb_disposition("").contains("filename=\"worksheet.ipynb\""));
        assert!(!ipynb_disposition("a\r\nSet-Cookie: x=1").contains('\n'));
    }

    fn card(project: &str, area: Option<&str>, path: &str, title: &str) -> CardRow {
        CardRow {
            forge: ForgeKind::GitLab,
            project: project.into(),
            project_title: Some("Bacterial growth".into()),
            area: area.map(Into::into),
            tag: "v1.2".into(),
            path: path.into(),
            title: title.into(),
            description: Some("Logistic growth <of> a culture".into()),
        }
    }

    #[tokio::test]
    async fn renders_landing_page() {
        let cards = vec![
            card(
                "lab/growth",
                Some("Microbiology"),
                "growth.ipynb",
                "Growth curve",
            ),
            card(
                "lab/growth",
                Some("Microbiology"),
                "sub dir/b.ipynb",
                "Second",
            ),
            card("lab/other", None, "x.ipynb", "Uncategorised"),
        ];
        let (status, page) =
            text(landing_page(&Templates::new(), Some("gro\"wth"), &cards).unwrap()).await;
        assert_eq!(status, StatusCode::OK);
        assert!(page.contains("<title>nbforge worksheets</title>"));
        insta::assert_snapshot!(main(&page));

        let (_, empty) = text(landing_page(&Templates::new(), None, &[]).unwrap()).await;
        assert!(empty.contains("No official worksheets are published yet."));
        let (_, none) = text(landing_page(&Templates::new(), Some("zzz"), &[]).unwrap()).await;
        assert!(none.contains("No worksheet matches this search."));
    }

    /// A small worksheet: markdown, a parameters cell, and outputs of each kind.
    const NOTEBOOK: &str = r##"{
 "nbformat": 4, "nbformat_minor": 5, "metadata": {},
 "cells": [
  {"cell_type": "markdown", "id": "a", "metadata": {}, "source": "# Growth curve\n\nThe *logistic* model."},
  {"cell_type": "code", "id": "b", "metadata": {"tags": ["parameters"]}, "execution_count": 1, "outputs": [],
   "source": "rate: float = 0.8  # growth rate r per hour\nhours = 24  # length of the experiment\nlog_scale = False\nreplicates = [1, 2, 3]\ncfg = load_config()"},
  {"cell_type": "code", "id": "c", "metadata": {}, "execution_count": 2,
   "source": "import numpy\nprint('done')",
   "outputs": [
    {"output_type": "stream", "name": "stdout", "text": "done <ok>\n"},
    {"output_type": "display_data", "metadata": {}, "data": {"text/html": "<table><tr><td>1</td></tr></table><script>alert(1)</script>", "text/plain": "table"}}
   ]}
 ]
}"##;

    fn sheet() -> Sheet {
        let nb = Notebook::from_slice(NOTEBOOK.as_bytes()).unwrap();
        let rendered = crate::worksheet::render(&nb, &Default::default());
        Sheet {
            row: WorksheetRow {
                forge: crate::events::ForgeKind::GitLab,
                project: "lab/growth".into(),
                tag: "v1".into(),
                path: "growth.ipynb".into(),
                title: "Growth curve".into(),
                description: Some("Logistic growth of a culture".into()),
                error: None,
                published_at: 0,
            },
            body_html: rendered.body_html,
            parsed: Some(Arc::new(Parsed {
                params: parameters(&nb),
                notebook: nb,
            })),
        }
    }

    #[tokio::test]
    async fn worksheet_page_with_outputs_and_form() {
        let res = sheet()
            .page(&Templates::new(), &HashMap::new(), &[], StatusCode::OK)
            .unwrap();
        let (status, page) = text(res).await;
        assert_eq!(status, StatusCode::OK);
        assert!(!page.contains("import numpy"), "no code");
        assert!(!page.contains("<script"), "outputs are sanitized");
        insta::assert_snapshot!(main(&page));
    }

    #[tokio::test]
    async fn worksheet_form_with_errors() {
        let sheet = sheet();
        let submitted: HashMap<String, String> = [
            ("hours", "abc"),
            ("replicates", "1, two, 3"),
            ("ratee", "1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let params = &sheet.parsed.as_ref().unwrap().params;
        let errors = validate(params, &submitted).unwrap_err();
        let res = sheet
            .page(
                &Templates::new(),
                &submitted,
                &errors,
                StatusCode::UNPROCESSABLE_ENTITY,
            )
            .unwrap();
        let (status, page) = text(res).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        insta::assert_snapshot!(main(&page));
    }
}
