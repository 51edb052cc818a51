//! `cleanup` (scheduled): removes what nbforge no longer needs, each after its retention:
//! finished jobs and their deliveries, the git mirrors of projects deleted or not fetched
//! lately, and environment images (this builder's, carrying nbforge's labels) that no
//! build has used lately — never the image of a build at a commit a branch or tag points at,
//! nor an image a stored worksheet run executed in (it can be run again exactly); the
//! containers of worksheet runs left behind (`runs::remove_stale_containers`); visitors'
//! runs whose results expired, with their throwaway homes, and throwaway homes nothing
//! uses any more (`runs::visitors::expire`); conda prefixes that builds which never ended
//! left on the host (`environment::conda::remove_stale_prefixes`).

use std::collections::HashSet;

use bollard::query_parameters::{ListImagesOptions, RemoveImageOptions};
use serde::{Deserialize, Serialize};

use crate::environment::LABEL_KEY;
use crate::jobs::{Context, Job, JobError, Run, Subject};
use crate::storage::{JobKind, millis};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cleanup {}

impl Job for Cleanup {
    const KIND: JobKind = JobKind::Cleanup;

    fn subject(&self) -> Subject {
        Subject::default()
    }

    async fn run(&self, ctx: &Context, _run: &Run) -> Result<(), JobError> {
        let retention = &ctx.settings.jobs.retention;
        let queue = ctx.db.delete_finished_jobs(retention.jobs).await?;
        let projects = ctx.db.project_paths().await?;
        let mirrors = ctx
            .mirrors
            .remove_unused(&projects, retention.mirrors)
            .await?;
        let images = if ctx.settings.environments.enabled {
            remove_unused_images(ctx).await?
        } else {
            Vec::new()
        };
        let run_containers = match crate::runs::remove_stale_containers(ctx).await {
            Ok(n) => n,
            // Without a Docker engine there are no run containers to remove.
            Err(JobError::Transient(e)) => {
                tracing::warn!("cleanup could not look for run containers: {e:#}");
                0
            }
            Err(e) => return Err(e),
        };
        let now = ctx.clock.now_ms();
        let access = &ctx.settings.access;
        let sessions = ctx
            .db
            .delete_stale_web_sessions(
                now - millis(access.session_idle),
                now - millis(crate::access::service::LOGIN_ATTEMPT_TTL),
            )
            .await?;
        let visitors = crate::runs::visitors::expire(ctx).await?;
        // Conda prefixes of builds that never ended (the process died mid-build).
        let conda_dir = crate::environment::flow::conda_settings(&ctx.settings).cache_dir;
        let older_than =
            ctx.settings.environments.build_timeout + std::time::Duration::from_secs(3600);
        let prefixes = tokio::task::spawn_blocking(move || {
            crate::environment::conda::remove_stale_prefixes(&conda_dir, older_than)
        })
        .await
        .unwrap_or(0);
        tracing::info!(
            "cleanup removed {} jobs, {} deliveries, {} mirrors, {} images, {} run containers, {} ended sessions and logins, {} expired visitors' runs, {} unused throwaway homes, {} conda prefixes left by builds that did not end",
            queue.jobs,
            queue.deliveries,
            mirrors.len(),
            images.len(),
            run_containers,
            sessions,
            visitors.runs,
            visitors.homes,
            prefixes
        );
        Ok(())
    }
}

/// Removes this builder's labelled images that no build used within the retention, that
/// no current branch or tag's build uses, and that no stored run refers to (by image id).
/// Returns the removed tags.
async fn remove_unused_images(ctx: &Context) -> Result<Vec<String>, JobError> {
    let retention = ctx.settings.jobs.retention.images;
    let in_use: HashSet<String> = ctx.db.images_in_use(retention).await?.into_iter().collect();
    let of_runs: HashSet<String> = ctx.db.run_image_digests().await?.into_iter().collect();
    let cutoff_secs = (ctx.clock.now_ms() - millis(retention)) / 1000;
    let docker = ctx
        .builder
        .docker()
        .map_err(|e| JobError::Transient(e.into()))?;
    let filters = [("label".to_owned(), vec![LABEL_KEY.to_owned()])].into();
    let images = docker
        .list_images(Some(ListImagesOptions {
            filters: Some(filters),
            ..Default::default()
        }))
        .await
        .map_err(|e| JobError::Transient(anyhow::anyhow!("listing images: {e}")))?;
    let mut removed = Vec::new();
    for image in images {
        // A tag in use keeps the whole image; so does being newer than the retention.
        let ours: Vec<&String> = image
            .repo_tags
            .iter()
            .filter(|t| ctx.builder.owns_image(t))
            .collect();
        if ours.is_empty()
            || image.created >= cutoff_secs
            || image.repo_tags.iter().any(|t| in_use.contains(t))
            || of_runs.contains(&image.id)
        {
            continue;
        }
        for tag in ours {
            match docker
                .remove_image(tag, None::<RemoveImageOptions>, None)
                .await
            {
                Ok(_) => removed.push(tag.clone()),
                // A session container still uses it, or it went meanwhile: keep going.
                Err(e) => tracing::warn!("cleanup kept image {tag}: {e}"),
            }
        }
    }
    Ok(removed)
}
