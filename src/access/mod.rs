//! Access: who a person is and what they may do. GitLab access levels map to platform
//! roles ([`roles::RoleMap`]), projects carry their GitLab visibility, user levels decide
//! how much interface a person sees ([`roles::UserLevel::tools`]), and one function,
//! [`policy::Policy::can`], decides every access.
//!
//! Login with GitLab (OAuth2 with PKCE), browser sessions, CSRF checks, the membership
//! tables and the reconciler build on these types.

pub mod oauth;
pub mod policy;
pub mod roles;
pub mod sealed;

pub use policy::{Action, Policy, Resource, Subject};
pub use roles::{AccessLevel, Role, RoleMap, Tools, UserLevel, Visibility};
