//! GitLab access levels, the platform roles they map to, project visibility, and the user
//! levels that decide how much of the interface a person sees.

use serde::{Deserialize, Serialize};

pub use crate::events::Visibility;

/// A GitLab access level, as GitLab numbers them (10 guest, 15 planner, 20 reporter,
/// 30 developer, 40 maintainer, 50 owner). Unknown numbers are kept as they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AccessLevel(pub i64);

impl AccessLevel {
    pub const GUEST: AccessLevel = AccessLevel(10);
    pub const PLANNER: AccessLevel = AccessLevel(15);
    pub const REPORTER: AccessLevel = AccessLevel(20);
    pub const DEVELOPER: AccessLevel = AccessLevel(30);
    pub const MAINTAINER: AccessLevel = AccessLevel(40);
    pub const OWNER: AccessLevel = AccessLevel(50);
}

/// What a person may do in a project on nbforge, from least to most.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// No role: what the project's visibility allows everyone.
    #[default]
    None,
    /// Launch, run, read.
    Read,
    /// Also save versions and publish.
    Write,
    /// Also manage the project's listing.
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::None => "none",
            Role::Read => "read",
            Role::Write => "write",
            Role::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        [Role::None, Role::Read, Role::Write, Role::Admin]
            .into_iter()
            .find(|r| r.as_str() == s.trim().to_ascii_lowercase())
    }
}

/// Which role each access level gives: the role of the highest listed level at or below
/// the member's level. The default follows GitLab's meaning of the levels: guest → none,
/// planner and reporter → read, developer → write, maintainer and owner → admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMap {
    /// (minimum level, role), sorted by level.
    steps: Vec<(AccessLevel, Role)>,
}

impl Default for RoleMap {
    fn default() -> Self {
        RoleMap {
            steps: vec![
                (AccessLevel::GUEST, Role::None),
                (AccessLevel::PLANNER, Role::Read),
                (AccessLevel::REPORTER, Role::Read),
                (AccessLevel::DEVELOPER, Role::Write),
                (AccessLevel::MAINTAINER, Role::Admin),
                (AccessLevel::OWNER, Role::Admin),
            ],
        }
    }
}

impl RoleMap {
    /// Parses `LEVEL=ROLE` pairs separated by commas, e.g.
    /// `10=none,15=read,20=read,30=write,40=admin,50=admin`; levels may be GitLab's names
    /// (`guest`, `planner`, `reporter`, `developer`, `maintainer`, `owner`).
    pub fn parse(spec: &str) -> Result<RoleMap, String> {
        let mut steps = Vec::new();
        for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (level, role) = pair
                .split_once('=')
                .ok_or_else(|| format!("`{pair}` is not LEVEL=ROLE"))?;
            let level = match level.trim().to_ascii_lowercase().as_str() {
                "guest" => AccessLevel::GUEST,
                "planner" => AccessLevel::PLANNER,
                "reporter" => AccessLevel::REPORTER,
                "developer" => AccessLevel::DEVELOPER,
                "maintainer" => AccessLevel::MAINTAINER,
                "owner" => AccessLevel::OWNER,
                n => AccessLevel(
                    n.parse()
                        .map_err(|_| format!("`{level}` is not an access level"))?,
                ),
            };
            let role = Role::parse(role)
                .ok_or_else(|| format!("`{role}` is not a role (none, read, write, admin)"))?;
            steps.push((level, role));
        }
        if steps.is_empty() {
            return Err("no LEVEL=ROLE pairs".into());
        }
        steps.sort_by_key(|(l, _)| *l);
        Ok(RoleMap { steps })
    }

    /// The role an access level gives; below the lowest listed level, none.
    pub fn role(&self, level: AccessLevel) -> Role {
        self.steps
            .iter()
            .take_while(|(min, _)| *min <= level)
            .last()
            .map_or(Role::None, |(_, r)| *r)
    }
}

/// How much of the interface a person sees. Each level sees what the one before it sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UserLevel {
    /// Anonymous visitors: official worksheets.
    Public,
    /// Also "run" and "my results".
    EndUser,
    /// Also notebook sessions and save / share.
    ScriptAuthor,
    /// Also terminals, git details and build logs.
    Developer,
}

/// The tools one level sees: the one place that decides it, used by every page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Tools {
    pub run: bool,
    pub my_results: bool,
    pub sessions: bool,
    pub save_share: bool,
    pub terminal: bool,
    pub git_details: bool,
    pub build_logs: bool,
}

impl UserLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            UserLevel::Public => "public",
            UserLevel::EndUser => "end-user",
            UserLevel::ScriptAuthor => "script-author",
            UserLevel::Developer => "developer",
        }
    }

    pub fn parse(s: &str) -> Option<UserLevel> {
        [
            UserLevel::Public,
            UserLevel::EndUser,
            UserLevel::ScriptAuthor,
            UserLevel::Developer,
        ]
        .into_iter()
        .find(|l| l.as_str() == s.trim().to_ascii_lowercase())
    }

    pub fn tools(self) -> Tools {
        let at_least = |l: UserLevel| self >= l;
        Tools {
            run: at_least(UserLevel::EndUser),
            my_results: at_least(UserLevel::EndUser),
            sessions: at_least(UserLevel::ScriptAuthor),
            save_share: at_least(UserLevel::ScriptAuthor),
            terminal: at_least(UserLevel::Developer),
            git_details: at_least(UserLevel::Developer),
            build_logs: at_least(UserLevel::Developer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_map_follows_gitlab() {
        let m = RoleMap::default();
        let cases = [
            (0, Role::None),
            (10, Role::None),
            (15, Role::Read),
            (20, Role::Read),
            (30, Role::Write),
            (40, Role::Admin),
            (50, Role::Admin),
            (60, Role::Admin),
        ];
        for (level, role) in cases {
            assert_eq!(m.role(AccessLevel(level)), role, "level {level}");
        }
    }

    #[test]
    fn maps_parse_names_and_numbers() {
        let m = RoleMap::parse("guest=read, developer=admin").unwrap();
        assert_eq!(m.role(AccessLevel(5)), Role::None);
        assert_eq!(m.role(AccessLevel::REPORTER), Role::Read);
        assert_eq!(m.role(AccessLevel::DEVELOPER), Role::Admin);
        assert!(RoleMap::parse("30=superuser").is_err());
        assert!(RoleMap::parse("lots=read").is_err());
        assert!(RoleMap::parse("").is_err());
    }

    #[test]
    fn unknown_visibility_is_private() {
        assert_eq!(Visibility::parse("public"), Visibility::Public);
        assert_eq!(Visibility::parse("10"), Visibility::Internal);
        assert_eq!(Visibility::parse("secret"), Visibility::Private);
    }

    #[test]
    fn each_level_sees_more() {
        assert_eq!(
            UserLevel::Public.tools(),
            Tools {
                run: false,
                my_results: false,
                sessions: false,
                save_share: false,
                terminal: false,
                git_details: false,
                build_logs: false
            }
        );
        let end = UserLevel::EndUser.tools();
        assert!(end.run && end.my_results && !end.sessions);
        let author = UserLevel::ScriptAuthor.tools();
        assert!(author.sessions && author.save_share && !author.terminal);
        let dev = UserLevel::Developer.tools();
        assert!(dev.terminal && dev.git_details && dev.build_logs);
        assert_eq!(
            UserLevel::parse("script-author"),
            Some(UserLevel::ScriptAuthor)
        );
    }
}
