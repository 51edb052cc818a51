//! Launching a session from a launch link, as BinderHub does: resolve the ref to a commit,
//! find or build the commit's environment, fetch the repository as the user, start the
//! session, and report each phase on the way (`waiting`, `fetching`, `building`,
//! `launching`, then `ready` with the URL or `failed` with a message).

pub mod checkout;
