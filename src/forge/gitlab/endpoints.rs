//! GitLab REST endpoints the `gitlab` crate does not ship, written against its
//! `Endpoint` trait so they run through the same client and error handling.

use gitlab::api::common::NameOrId;
use gitlab::api::endpoint_prelude::*;

/// `POST /projects/:id/fork`: fork a project into a namespace, given by its full path.
///
/// GitLab answers with the new project at once and copies the repository in the
/// background (`import_status` goes from `scheduled` to `finished`).
#[derive(Debug, Clone)]
pub struct ForkProject<'a> {
    pub project: NameOrId<'a>,
    pub namespace_path: Cow<'a, str>,
}

impl Endpoint for ForkProject<'_> {
    fn method(&self) -> Method {
        Method::POST
    }

    fn endpoint(&self) -> Cow<'static, str> {
        format!("projects/{}/fork", self.project).into()
    }

    fn body(&self) -> Result<Option<(&'static str, Vec<u8>)>, BodyError> {
        let mut params = FormParams::default();
        params.push("namespace_path", self.namespace_path.as_ref());
        params.into_body()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fork_endpoint_escapes_project_path() {
        let fork = ForkProject {
            project: NameOrId::from("group/sub/proj"),
            namespace_path: "alice".into(),
        };
        assert_eq!(fork.endpoint(), "projects/group%2Fsub%2Fproj/fork");
        let (mime, body) = fork.body().unwrap().unwrap();
        assert_eq!(mime, "application/x-www-form-urlencoded");
        assert_eq!(body, b"namespace_path=alice");
    }
}
