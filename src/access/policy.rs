//! The one authorization check: [`Policy::can`] over who asks ([`Subject`]), what for
//! ([`Action`]) and on what ([`Resource`]). Every route and job asks it; nothing else
//! decides access. When in doubt it denies.

use serde::Serialize;

use super::roles::{Role, Visibility};

/// Who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Not logged in.
    Anonymous,
    /// A logged-in person.
    User {
        id: i64,
        username: String,
        /// From `NBFORGE_ADMINS` or `NBFORGE_ADMIN_GROUP`.
        platform_admin: bool,
    },
    /// A request carrying the admin API's bearer token.
    AdminToken,
}

impl Subject {
    pub fn is_logged_in(&self) -> bool {
        matches!(self, Subject::User { .. })
    }

    fn is_platform_admin(&self) -> bool {
        matches!(
            self,
            Subject::AdminToken
                | Subject::User {
                    platform_admin: true,
                    ..
                }
        )
    }
}

/// What is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// Published worksheets, their pages and the landing page's cards of the project.
    ViewWorksheets,
    /// The launch page and the environment's status badge.
    ViewLaunchPage,
    /// Start a Jupyter session.
    LaunchSession,
    /// Run a worksheet with new values.
    RunWorksheet,
    /// Build logs and build details.
    ReadBuildLogs,
    /// Save a version, share, propose a change (fork and merge request as the user).
    Contribute,
    /// Approve the project for the official listing.
    ApproveOfficial,
    /// The admin API.
    AdminApi,
}

impl Action {
    pub const ALL: [Action; 8] = [
        Action::ViewWorksheets,
        Action::ViewLaunchPage,
        Action::LaunchSession,
        Action::RunWorksheet,
        Action::ReadBuildLogs,
        Action::Contribute,
        Action::ApproveOfficial,
        Action::AdminApi,
    ];
}

/// What it is asked on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// A project, with its visibility and the subject's role in it (from memberships,
    /// inherited ones included; [`Role::None`] for anonymous visitors and non-members).
    Project { visibility: Visibility, role: Role },
    /// nbforge itself (the admin API).
    Platform,
}

/// The settings the rules depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Anonymous visitors may launch sessions of public projects.
    pub anonymous_sessions: bool,
    /// Anonymous visitors may run worksheets of public projects.
    pub anonymous_runs: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            anonymous_sessions: true,
            anonymous_runs: false,
        }
    }
}

impl Policy {
    /// Whether `subject` may do `action` on `resource`.
    ///
    /// - Public projects are readable by anyone, internal ones by any logged-in user,
    ///   private ones by members with the read role and up (and platform admins).
    /// - Sessions and runs need a readable project and a login, except that anonymous
    ///   visitors may launch (and, when allowed, run) public projects.
    /// - Build logs of private projects need the write role.
    /// - Saving, sharing and proposing need a login and a readable project (work goes to
    ///   the user's fork).
    /// - Approving the official listing and the admin API are for platform admins (or the
    ///   admin token).
    pub fn can(&self, subject: &Subject, action: Action, resource: Resource) -> bool {
        if matches!(action, Action::AdminApi | Action::ApproveOfficial) {
            return subject.is_platform_admin();
        }
        let Resource::Project { visibility, role } = resource else {
            return subject.is_platform_admin();
        };
        if subject.is_platform_admin() {
            return true;
        }
        let readable = match visibility {
            Visibility::Public => true,
            Visibility::Internal => subject.is_logged_in(),
            Visibility::Private => subject.is_logged_in() && role >= Role::Read,
        };
        if !readable {
            return false;
        }
        let anonymous_public = !subject.is_logged_in() && visibility == Visibility::Public;
        match action {
            Action::ViewWorksheets | Action::ViewLaunchPage => true,
            Action::LaunchSession => {
                subject.is_logged_in() || (anonymous_public && self.anonymous_sessions)
            }
            Action::RunWorksheet => {
                subject.is_logged_in() || (anonymous_public && self.anonymous_runs)
            }
            Action::ReadBuildLogs => visibility != Visibility::Private || role >= Role::Write,
            Action::Contribute => subject.is_logged_in(),
            Action::ApproveOfficial | Action::AdminApi => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(admin: bool) -> Subject {
        Subject::User {
            id: 7,
            username: "ada".into(),
            platform_admin: admin,
        }
    }

    /// The whole table: every subject × role × visibility × action, from one list of
    /// expectations written the way the rules are stated.
    #[test]
    fn authorization_table() {
        use Visibility::*;
        let policy = Policy::default();
        let subjects = [
            ("anonymous", Subject::Anonymous, Role::None),
            ("no role", user(false), Role::None),
            ("read", user(false), Role::Read),
            ("write", user(false), Role::Write),
            ("admin", user(false), Role::Admin),
            ("platform admin", user(true), Role::None),
            ("admin token", Subject::AdminToken, Role::None),
        ];
        for (name, subject, role) in &subjects {
            for visibility in [Public, Internal, Private] {
                for action in Action::ALL {
                    let logged_in = subject.is_logged_in();
                    let admin = matches!(*name, "platform admin" | "admin token");
                    let readable = admin
                        || match visibility {
                            Public => true,
                            Internal => logged_in,
                            Private => logged_in && *role >= Role::Read,
                        };
                    let expected = match action {
                        Action::AdminApi | Action::ApproveOfficial => admin,
                        Action::ViewWorksheets | Action::ViewLaunchPage => readable,
                        Action::LaunchSession => {
                            readable && (logged_in || admin || visibility == Public)
                        }
                        Action::RunWorksheet => readable && (logged_in || admin),
                        Action::ReadBuildLogs => {
                            readable && (admin || visibility != Private || *role >= Role::Write)
                        }
                        Action::Contribute => readable && (logged_in || admin),
                    };
                    let got = policy.can(
                        subject,
                        action,
                        Resource::Project {
                            visibility,
                            role: *role,
                        },
                    );
                    assert_eq!(
                        got, expected,
                        "{name} {action:?} on a {visibility:?} project"
                    );
                }
            }
            assert_eq!(
                policy.can(subject, Action::AdminApi, Resource::Platform),
                matches!(*name, "platform admin" | "admin token"),
                "{name} on the admin API"
            );
        }
    }

    #[test]
    fn anonymous_runs_follow_the_setting() {
        let public = Resource::Project {
            visibility: Visibility::Public,
            role: Role::None,
        };
        let open = Policy {
            anonymous_sessions: false,
            anonymous_runs: true,
        };
        assert!(open.can(&Subject::Anonymous, Action::RunWorksheet, public));
        assert!(!open.can(&Subject::Anonymous, Action::LaunchSession, public));
        let private = Resource::Project {
            visibility: Visibility::Private,
            role: Role::None,
        };
        assert!(!open.can(&Subject::Anonymous, Action::RunWorksheet, private));
    }
}
