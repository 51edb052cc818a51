//! Access: who a person is and what they may do. GitLab access levels map to platform
//! roles ([`roles::RoleMap`]), projects carry their GitLab visibility, user levels decide
//! how much interface a person sees ([`roles::UserLevel::tools`]), and one function,
//! [`policy::Policy::can`], decides every access.
//!
//! [`Access`] is the running service's side: sessions to [`Viewer`]s, checks for a
//! project, login with GitLab (OAuth2 with PKCE) and the users' GitLab tokens.

pub mod oauth;
pub mod policy;
pub mod roles;
pub mod sealed;
pub mod service;

pub use policy::{Action, Policy, Resource, Subject};
pub use roles::{AccessLevel, Role, RoleMap, Tools, UserLevel, Visibility};
pub use service::{Access, Denied, Viewer};
