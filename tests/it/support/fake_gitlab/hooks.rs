//! Webhook and system hook payloads, shaped like GitLab's documented examples
//! (`doc/user/project/integrations/webhook_events.md`, `doc/administration/system_hooks.md`),
//! built from the fake's real state.

use super::*;

impl FakeGitLab {
    /// `Push Hook` for `branch` moving from `before` to `after` (either may be the
    /// all-zero sha for creation/deletion). Commits are read from the repository:
    /// those reachable from `after` and not from `before` (for a new branch: not
    /// from any other branch), newest 20 listed oldest first.
    pub fn push_payload(
        &self,
        project: &FakeProject,
        branch: &str,
        before: &str,
        after: &str,
    ) -> FakeHook {
        let s = self.inner.state();
        let project = s
            .find_project(&project.id.to_string())
            .cloned()
            .expect("project exists");
        let actor = s.user(s.actor).cloned().expect("actor exists");
        let repo = project.repo();
        let (commits, total) = if after == ZERO_SHA {
            (Vec::new(), 0)
        } else {
            let mut walk = repo.revwalk().expect("revwalk");
            walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::TIME)
                .expect("sorting");
            walk.push(Oid::from_str(after).expect("after sha"))
                .expect("push after");
            if before != ZERO_SHA {
                walk.hide(Oid::from_str(before).expect("before sha"))
                    .expect("hide before");
            } else {
                for r in repo
                    .references_glob("refs/heads/*")
                    .expect("branches")
                    .flatten()
                {
                    if r.shorthand().ok() != Some(branch)
                        && let Some(oid) = r.target()
                    {
                        walk.hide(oid).expect("hide other branch");
                    }
                }
            }
            let oids: Vec<Oid> = walk.filter_map(Result::ok).collect();
            let total = oids.len();
            let mut listed: Vec<Value> = oids
                .iter()
                .take(20)
                .map(|oid| hook_commit(&repo, &project, *oid, true))
                .collect();
            listed.reverse();
            (listed, total)
        };
        let body = json!({
            "object_kind": "push",
            "event_name": "push",
            "before": before,
            "after": after,
            "ref": format!("refs/heads/{branch}"),
            "ref_protected": default_branch(&repo).as_deref() == Some(branch),
            "checkout_sha": if after == ZERO_SHA { Value::Null } else { json!(after) },
            "message": Value::Null,
            "user_id": actor.id,
            "user_name": actor.name,
            "user_username": actor.username,
            "user_email": actor.email,
            "user_avatar": avatar(&actor),
            "project_id": project.id,
            "project": hook_project(&s, &project, &self.inner.base_url, true),
            "commits": commits,
            "total_commits_count": total,
            "push_options": {},
            "repository": hook_repository(&project, &repo),
        });
        FakeHook {
            event: "Push Hook",
            body,
        }
    }

    /// `Tag Push Hook` for `tag` going from `before` to `after` (ref targets; the
    /// all-zero sha for creation/deletion). `checkout_sha` is the tagged commit.
    pub fn tag_push_payload(
        &self,
        project: &FakeProject,
        tag: &str,
        before: &str,
        after: &str,
    ) -> FakeHook {
        let s = self.inner.state();
        let project = s
            .find_project(&project.id.to_string())
            .cloned()
            .expect("project exists");
        let actor = s.user(s.actor).cloned().expect("actor exists");
        let repo = project.repo();
        let checkout = if after == ZERO_SHA {
            Value::Null
        } else {
            let obj = repo
                .find_object(Oid::from_str(after).expect("after sha"), None)
                .expect("tag target exists");
            json!(
                obj.peel_to_commit()
                    .expect("tag points at a commit")
                    .id()
                    .to_string()
            )
        };
        let body = json!({
            "object_kind": "tag_push",
            "event_name": "tag_push",
            "before": before,
            "after": after,
            "ref": format!("refs/tags/{tag}"),
            "ref_protected": false,
            "checkout_sha": checkout,
            "message": Value::Null,
            "user_id": actor.id,
            "user_name": actor.name,
            "user_username": actor.username,
            "user_email": actor.email,
            "user_avatar": avatar(&actor),
            "project_id": project.id,
            "project": hook_project(&s, &project, &self.inner.base_url, true),
            "commits": [],
            "total_commits_count": 0,
            "push_options": {},
            "repository": hook_repository(&project, &repo),
        });
        FakeHook {
            event: "Tag Push Hook",
            body,
        }
    }

    /// `Merge Request Hook` for `mr` with `action`. `object_attributes.state`
    /// follows the action (`close` → `closed`, `merge` → `merged`, else `opened`);
    /// `last_commit` is the source branch tip; `oldrev` is included when given
    /// (GitLab sends it on `update` when new commits were pushed).
    pub fn merge_request_payload(
        &self,
        mr: &FakeMergeRequest,
        action: MrAction,
        oldrev: Option<&str>,
    ) -> FakeHook {
        let s = self.inner.state();
        let mr = s
            .merge_requests
            .iter()
            .find(|m| m.id == mr.id)
            .cloned()
            .expect("merge request exists");
        let target = s
            .find_project(&mr.project_id.to_string())
            .cloned()
            .expect("target exists");
        let source = s
            .find_project(&mr.source_project_id.to_string())
            .cloned()
            .expect("source exists");
        let actor = s.user(s.actor).cloned().expect("actor exists");
        let author = s.user(mr.author_id).cloned().expect("author exists");
        let source_repo = source.repo();
        let last_commit = source_repo
            .find_reference(&format!("refs/heads/{}", mr.source_branch))
            .ok()
            .and_then(|r| r.peel_to_commit().ok())
            .map(|c| hook_commit(&source_repo, &source, c.id(), false))
            .unwrap_or(Value::Null);
        let now = now_iso();
        let state = action.state();
        let state_id = match state {
            "opened" => 1,
            "closed" => 2,
            _ => 3,
        };
        let mut attrs = json!({
            "id": mr.id,
            "iid": mr.iid,
            "target_branch": mr.target_branch,
            "source_branch": mr.source_branch,
            "source_project_id": mr.source_project_id,
            "author_id": author.id,
            "assignee_ids": [],
            "assignee_id": Value::Null,
            "reviewer_ids": [],
            "title": mr.title,
            "created_at": now,
            "updated_at": now,
            "last_edited_at": Value::Null,
            "last_edited_by_id": Value::Null,
            "milestone_id": Value::Null,
            "state_id": state_id,
            "state": state,
            "blocking_discussions_resolved": true,
            "work_in_progress": false,
            "draft": false,
            "first_contribution": false,
            "merge_status": "can_be_merged",
            "target_project_id": mr.project_id,
            "description": mr.description,
            "prepared_at": now,
            "total_time_spent": 0,
            "time_change": 0,
            "human_total_time_spent": Value::Null,
            "human_time_change": Value::Null,
            "human_time_estimate": Value::Null,
            "url": mr.web_url,
            "source": hook_project(&s, &source, &self.inner.base_url, false),
            "target": hook_project(&s, &target, &self.inner.base_url, false),
            "last_commit": last_commit,
            "labels": [],
            "action": action.as_str(),
            "detailed_merge_status": if state == "opened" { "mergeable" } else { "not_open" },
        });
        if let Some(old) = oldrev {
            attrs["oldrev"] = json!(old);
        }
        let body = json!({
            "object_kind": "merge_request",
            "event_type": "merge_request",
            "user": hook_user(&actor),
            "project": hook_project(&s, &target, &self.inner.base_url, true),
            "repository": {
                "name": target.name,
                "url": target.http_url_to_repo,
                "description": "",
                "homepage": target.web_url,
            },
            "object_attributes": attrs,
            "labels": [],
            "changes": {},
            "assignees": [],
            "reviewers": [],
        });
        FakeHook {
            event: "Merge Request Hook",
            body,
        }
    }

    /// Group `Member Hook` for `user` in `group` at `access_level`.
    pub fn member_payload(
        &self,
        group: &str,
        user: &FakeUser,
        access_level: i64,
        event: MemberEvent,
    ) -> FakeHook {
        let s = self.inner.state();
        let g = s.find_group(group).cloned().expect("group exists");
        let now = now_iso();
        let body = json!({
            "created_at": now,
            "updated_at": now,
            "group_name": g.name,
            "group_path": g.full_path.rsplit('/').next().unwrap_or(&g.full_path),
            "group_id": g.id,
            "user_username": user.username,
            "user_name": user.name,
            "user_email": user.email,
            "user_id": user.id,
            "group_access": access_level_name(access_level),
            "group_plan": Value::Null,
            "expires_at": Value::Null,
            "event_name": event.as_str(),
        });
        FakeHook {
            event: "Member Hook",
            body,
        }
    }

    /// Project member `System Hook` (`user_add_to_team`, …) for `user` in `project` at
    /// `access_level`, as GitLab's documented example.
    pub fn team_member_payload(
        &self,
        project: &FakeProject,
        user: &FakeUser,
        access_level: i64,
        event: TeamEvent,
    ) -> FakeHook {
        let now = now_iso();
        let body = json!({
            "created_at": now,
            "updated_at": now,
            "event_name": event.as_str(),
            "access_level": access_level_name(access_level),
            "project_id": project.id,
            "project_name": project.name,
            "project_path": project.path,
            "project_path_with_namespace": project.path_with_namespace,
            "user_email": user.email,
            "user_name": user.name,
            "user_username": user.username,
            "user_id": user.id,
            "project_visibility": project.visibility,
        });
        FakeHook {
            event: "System Hook",
            body,
        }
    }

    /// `System Hook` for a group deleted or renamed (call [`FakeGitLab::remove_group`]
    /// after building a `Destroy` payload: it reads the group).
    pub fn system_group_payload(&self, full_path: &str, event: SystemGroupEvent) -> FakeHook {
        let s = self.inner.state();
        let g = s.find_group(full_path).cloned().expect("group exists");
        let now = now_iso();
        let last = |p: &str| p.rsplit('/').next().unwrap_or(p).to_owned();
        let mut body = json!({
            "created_at": now,
            "updated_at": now,
            "name": g.name,
            "path": last(&g.full_path),
            "full_path": g.full_path,
            "group_id": g.id,
            "owner_email": Value::Null,
            "owner_name": Value::Null,
        });
        match event {
            SystemGroupEvent::Destroy => body["event_name"] = json!("group_destroy"),
            SystemGroupEvent::Rename { old_full_path } => {
                body["event_name"] = json!("group_rename");
                body["old_path"] = json!(last(&old_full_path));
                body["old_full_path"] = json!(old_full_path);
            }
        }
        FakeHook {
            event: "System Hook",
            body,
        }
    }

    /// `System Hook` for a user deleted, renamed or refused at sign-in while blocked.
    pub fn system_user_payload(&self, user: &FakeUser, event: SystemUserEvent) -> FakeHook {
        let now = now_iso();
        let mut body = json!({
            "created_at": now,
            "updated_at": now,
            "email": user.email,
            "name": user.name,
            "username": user.username,
            "user_id": user.id,
        });
        match event {
            SystemUserEvent::Destroy => body["event_name"] = json!("user_destroy"),
            SystemUserEvent::Rename { old_username } => {
                body["event_name"] = json!("user_rename");
                body["old_username"] = json!(old_username);
            }
            SystemUserEvent::FailedLogin => {
                body["event_name"] = json!("user_failed_login");
                body["state"] = json!("blocked");
            }
        }
        FakeHook {
            event: "System Hook",
            body,
        }
    }

    /// `System Hook` for a project event. For rename/transfer, call
    /// [`FakeGitLab::move_project`] first: the payload carries the current path and
    /// the old one from the event.
    pub fn system_project_payload(
        &self,
        project: &FakeProject,
        event: SystemProjectEvent,
    ) -> FakeHook {
        let s = self.inner.state();
        // A destroyed project may already be gone from the fake: use the caller's copy.
        let p = s
            .find_project(&project.id.to_string())
            .cloned()
            .unwrap_or_else(|| project.clone());
        let owner = s
            .effective_members(&s.project_sources(&p))
            .into_iter()
            .filter(|(_, level)| *level >= 50)
            .map(|(u, _)| u)
            .next()
            .or_else(|| s.user(1).cloned())
            .expect("an owner");
        let now = now_iso();
        let namespace_id = s.find_group(&p.namespace).map(|g| g.id).unwrap_or(owner.id);
        let mut body = json!({
            "created_at": now,
            "updated_at": now,
            "event_name": event.as_str(),
            "name": p.name,
            "owner_email": owner.email,
            "owner_name": owner.name,
            "owners": [{"name": owner.name, "email": owner.email}],
            "path": p.path,
            "path_with_namespace": p.path_with_namespace,
            "project_id": p.id,
            "project_namespace_id": namespace_id,
            "project_visibility": p.visibility,
        });
        match &event {
            SystemProjectEvent::Rename {
                old_path_with_namespace,
            }
            | SystemProjectEvent::Transfer {
                old_path_with_namespace,
            } => {
                body["old_path_with_namespace"] = json!(old_path_with_namespace);
            }
            _ => {}
        }
        FakeHook {
            event: "System Hook",
            body,
        }
    }
}

fn hook_commit(repo: &Repository, project: &FakeProject, oid: Oid, with_files: bool) -> Value {
    let commit = repo.find_commit(oid).expect("commit exists");
    let author = commit.author();
    let message = commit.message().unwrap_or("").to_owned();
    let mut v = json!({
        "id": oid.to_string(),
        "message": message,
        "title": message.lines().next().unwrap_or(""),
        "timestamp": git_time(author.when()),
        "url": format!("{}/-/commit/{oid}", project.web_url),
        "author": {
            "name": author.name().unwrap_or(""),
            "email": author.email().unwrap_or(""),
        },
    });
    if with_files {
        let tree = commit.tree().expect("tree");
        let parent_tree = commit
            .parent(0)
            .ok()
            .map(|p| p.tree().expect("parent tree"));
        let diff = repo
            .diff_tree_to_tree(parent_tree.as_ref(), Some(&tree), None)
            .expect("diff");
        let (mut added, mut modified, mut removed) = (Vec::new(), Vec::new(), Vec::new());
        for delta in diff.deltas() {
            let path = |f: git2::DiffFile<'_>| {
                f.path()
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default()
            };
            match delta.status() {
                git2::Delta::Added => added.push(path(delta.new_file())),
                git2::Delta::Deleted => removed.push(path(delta.old_file())),
                _ => modified.push(path(delta.new_file())),
            }
        }
        v["added"] = json!(added);
        v["modified"] = json!(modified);
        v["removed"] = json!(removed);
    }
    v
}

fn hook_project(s: &FakeState, p: &FakeProject, base: &str, with_id: bool) -> Value {
    let repo = p.repo();
    let namespace_name = s
        .find_group(&p.namespace)
        .map(|g| g.name.clone())
        .or_else(|| {
            s.users
                .iter()
                .find(|u| u.username == p.namespace)
                .map(|u| u.name.clone())
        })
        .unwrap_or_else(|| p.namespace.clone());
    let ssh = ssh_url(base, p);
    let mut v = json!({
        "name": p.name,
        "description": "",
        "web_url": p.web_url,
        "avatar_url": Value::Null,
        "git_ssh_url": ssh,
        "git_http_url": p.http_url_to_repo,
        "namespace": namespace_name,
        "visibility_level": visibility_level(&p.visibility),
        "path_with_namespace": p.path_with_namespace,
        "default_branch": default_branch(&repo),
        "ci_config_path": Value::Null,
        "homepage": p.web_url,
        "url": ssh,
        "ssh_url": ssh,
        "http_url": p.http_url_to_repo,
    });
    if with_id {
        v["id"] = json!(p.id);
    }
    v
}

fn hook_repository(p: &FakeProject, _repo: &Repository) -> Value {
    json!({
        "name": p.name,
        "url": p.http_url_to_repo,
        "description": "",
        "homepage": p.web_url,
        "git_http_url": p.http_url_to_repo,
        "git_ssh_url": format!("git@fake-gitlab:{}.git", p.path_with_namespace),
        "visibility_level": visibility_level(&p.visibility),
    })
}

fn hook_user(u: &FakeUser) -> Value {
    json!({
        "id": u.id,
        "name": u.name,
        "username": u.username,
        "avatar_url": avatar(u),
        "email": u.email,
    })
}
