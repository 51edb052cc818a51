//! The URLs nbforge hands out: launch links (the BinderHub scheme: `/v2/gl/<namespace%2Fproject>/<ref>`,
//! `/v2/gh/<owner>/<repo>/<ref>`), the launch badge, worksheet links (`/w/…`) and build
//! logs. A leaf module that knows only the public URL and how each kind of link is encoded,
//! so pages, commit statuses and merge request notes all build the same links; it sits
//! below `web` because the jobs that post statuses and notes use it too.

use percent_encoding::{AsciiSet, CONTROLS, NON_ALPHANUMERIC, utf8_percent_encode};
use url::Url;

use crate::events::ForgeKind;

/// Characters escaped in one path segment of a worksheet URL.
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

/// `path` below the public URL (which ends with `/`).
fn absolute(public: &Url, path: &str) -> String {
    format!("{public}{}", path.trim_start_matches('/'))
}

/// `namespace%2Fproject`, as GitLab and BinderHub URLs carry a project path.
pub fn project_segment(project: &str) -> String {
    utf8_percent_encode(project, NON_ALPHANUMERIC).to_string()
}

/// The BinderHub-style launch path of a project at a ref or commit: on GitLab (and plain
/// git, whose deliveries are GitLab-shaped) `/v2/gl/<namespace%2Fproject>/<ref>`, on GitHub
/// `/v2/gh/<owner>/<repo>/<ref>`.
pub fn launch_path(forge: ForgeKind, project: &str, git_ref: &str) -> String {
    let git_ref = utf8_percent_encode(git_ref, NON_ALPHANUMERIC);
    match (forge, project.split_once('/')) {
        (ForgeKind::GitHub, Some((owner, repo))) => format!(
            "/v2/gh/{}/{}/{git_ref}",
            utf8_percent_encode(owner, NON_ALPHANUMERIC),
            utf8_percent_encode(repo, NON_ALPHANUMERIC)
        ),
        _ => format!("/v2/gl/{}/{git_ref}", project_segment(project)),
    }
}

/// The launch URL of a project at a ref or commit.
pub fn launch(public: &Url, forge: ForgeKind, project: &str, git_ref: &str) -> String {
    absolute(public, &launch_path(forge, project, git_ref))
}

/// The launch badge image.
pub fn badge(public: &Url) -> String {
    absolute(public, "/badge_logo.svg")
}

/// The environment status badge of a project at a ref (`…/<ref>.svg`).
pub fn status_badge(public: &Url, forge: ForgeKind, project: &str, git_ref: &str) -> String {
    let launch = launch_path(forge, project, git_ref);
    absolute(
        public,
        &format!("{}.svg", launch.replacen("/v2/", "/badge/", 1)),
    )
}

/// The path of a build's log.
pub fn build_log_path(build_id: i64) -> String {
    format!("/api/builds/{build_id}/log")
}

/// The URL of a build's log.
pub fn build_log(public: &Url, build_id: i64) -> String {
    absolute(public, &build_log_path(build_id))
}

/// `/w/<project>[/<tag>[/<path>]]`, each segment escaped.
pub fn worksheet(project: &str, tag: Option<&str>, path: Option<&str>) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn public() -> Url {
        "https://nbforge.example/".parse().unwrap()
    }

    #[test]
    fn launch_links_encode_the_project_and_the_ref() {
        assert_eq!(
            launch(
                &public(),
                ForgeKind::GitLab,
                "lab/growth curve",
                "feature/x"
            ),
            "https://nbforge.example/v2/gl/lab%2Fgrowth%20curve/feature%2Fx"
        );
        assert_eq!(
            launch_path(ForgeKind::GitLab, "lab/growth", "v1"),
            "/v2/gl/lab%2Fgrowth/v1"
        );
        assert_eq!(
            launch_path(ForgeKind::GitHub, "octo/growth", "main"),
            "/v2/gh/octo/growth/main"
        );
    }

    #[test]
    fn badge_and_build_logs_sit_below_the_public_url() {
        let public: Url = "https://example.org/nbforge/".parse().unwrap();
        assert_eq!(badge(&public), "https://example.org/nbforge/badge_logo.svg");
        assert_eq!(
            build_log(&public, 7),
            "https://example.org/nbforge/api/builds/7/log"
        );
        assert_eq!(build_log_path(7), "/api/builds/7/log");
    }

    #[test]
    fn worksheet_links_escape_each_segment() {
        assert_eq!(worksheet("lab/growth", None, None), "/w/lab/growth");
        assert_eq!(
            worksheet("lab/growth", Some("v1"), Some("sub dir/a?b#c.ipynb")),
            "/w/lab/growth/v1/sub%20dir/a%3Fb%23c.ipynb"
        );
    }
}
