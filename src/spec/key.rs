//! The environment key: a sha256 over exactly what an image build reads (spec files, the
//! files they pull in, `[build] inputs`), the base image and the generator version. Where the
//! inputs cannot be known (`postBuild`/`start` without `[build] inputs`, a Dockerfile) the key
//! covers the whole tree.

use std::collections::BTreeSet;

use sha2::{Digest, Sha256};

use super::{Analysis, Diagnostic, GENERATOR_VERSION, Kind, Options, SpecError};
use crate::repo::tree::{EntryKind, FileTree, resolve, walk_files};

pub(super) fn compute(
    src: &dyn FileTree,
    opts: &Options,
    a: &mut Analysis,
) -> Result<(), SpecError> {
    let mut inputs: BTreeSet<String> = BTreeSet::new();
    inputs.extend(a.files.iter().cloned());
    inputs.extend(a.plan.requirement_files.iter().cloned());
    let mut all: Option<Vec<String>> = None;
    let mut all_files = |src: &dyn FileTree| -> Result<Vec<String>, SpecError> {
        if all.is_none() {
            all = Some(walk_files(src, "")?);
        }
        Ok(all.clone().unwrap_or_default())
    };
    for root in a.plan.package_roots.iter().chain(&a.plan.r_roots) {
        match resolve(src, root)? {
            Some((real, EntryKind::Dir)) => inputs.extend(walk_files(src, &real)?),
            Some((_, EntryKind::File)) => {
                inputs.insert(root.clone());
            }
            _ => {}
        }
    }

    let build_inputs = a
        .launch
        .as_ref()
        .map(|l| l.build_inputs.clone())
        .unwrap_or_default();
    if !build_inputs.is_empty() {
        let mut unmatched = Vec::new();
        for pattern in &build_inputs {
            let mut matched = true;
            let plain = !pattern.contains(['*', '?', '[', '{']);
            if plain {
                // A plain path names a file or a folder: no need to walk the whole tree.
                match resolve(src, pattern.trim_end_matches('/'))? {
                    Some((real, EntryKind::Dir)) => inputs.extend(walk_files(src, &real)?),
                    Some((_, EntryKind::File)) => {
                        inputs.insert(pattern.trim_end_matches('/').to_owned());
                    }
                    _ => matched = false,
                }
            } else {
                let matcher = globset::GlobBuilder::new(pattern)
                    .literal_separator(true)
                    .build()
                    .map_err(|e| {
                        SpecError::Invalid(vec![Diagnostic::file(
                            "launch.toml",
                            format!("build input: {e}"),
                        )])
                    })?
                    .compile_matcher();
                let files = all_files(src)?;
                let before = inputs.len();
                inputs.extend(files.iter().filter(|f| matcher.is_match(f)).cloned());
                matched = inputs.len() > before || files.iter().any(|f| matcher.is_match(f));
            }
            if !matched {
                unmatched.push(format!(
                    "launch.toml: build input {pattern:?} matches no file"
                ));
            }
        }
        a.warnings.extend(unmatched);
    }

    let scripts: Vec<&str> = [&a.plan.post_build, &a.plan.start]
        .into_iter()
        .flatten()
        .map(String::as_str)
        .collect();
    let whole = build_inputs.is_empty() && (a.kind == Kind::Dockerfile || !scripts.is_empty());
    if whole {
        inputs.extend(all_files(src)?);
        a.warnings.push(if a.kind == Kind::Dockerfile {
            "the Dockerfile may COPY any file, so the environment key covers the whole \
             repository and every commit rebuilds; list the files it reads under [build] inputs \
             in launch.toml to narrow it"
                .to_owned()
        } else {
            format!(
                "{} may read any file, so the environment key covers the whole repository and \
                 every commit rebuilds; list the files it reads under [build] inputs in \
                 launch.toml to narrow it",
                scripts.join(" and ")
            )
        });
    }

    let mut h = Sha256::new();
    let mut field = |s: &str| {
        h.update((s.len() as u64).to_le_bytes());
        h.update(s.as_bytes());
    };
    field("nbforge-environment-key");
    field(GENERATOR_VERSION);
    field(&opts.base_image);
    field(&opts.base_python);
    field(a.kind.as_str());
    field(a.python_version.as_deref().unwrap_or("-"));
    field(a.spec_dir.as_deref().unwrap_or("-"));
    let ca = opts
        .extra_ca
        .as_ref()
        .map(|c| hex::encode(Sha256::digest(c)))
        .unwrap_or_else(|| "-".into());
    field(&ca);
    for path in &inputs {
        let id = match resolve(src, path)? {
            Some((real, EntryKind::File)) => src.blob_id(&real)?,
            _ => continue,
        };
        field(path);
        field(&id.to_string());
    }
    a.environment_key = hex::encode(h.finalize());
    a.inputs = inputs.into_iter().collect();
    a.whole_tree = whole;
    Ok(())
}
