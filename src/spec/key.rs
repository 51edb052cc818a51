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
    // The base image and Python the image is built from (one per Python version).
    field(a.base_image.as_deref().unwrap_or(&opts.base_image));
    field(a.image_python.as_deref().unwrap_or(&opts.base_python));
    field(a.kind.as_str());
    field(a.python_version.as_deref().unwrap_or("-"));
    field(a.spec_dir.as_deref().unwrap_or("-"));
    let ca = opts
        .extra_ca
        .as_ref()
        .map(|c| hex::encode(Sha256::digest(c)))
        .unwrap_or_else(|| "-".into());
    field(&ca);
    if a.kind == Kind::R {
        field(&opts.base_r);
        field(&opts.cran_mirror);
    }
    // What the solve of an environment file reads besides the file: the channels.
    if a.kind == Kind::Conda {
        field(&opts.conda.default_channels.join(","));
        field(&opts.conda.channel_alias);
        field(&opts.conda.priority);
    }
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

#[cfg(test)]
mod tests {
    use crate::spec::Options;
    use crate::spec::testing::*;

    #[test]
    fn spec_key_stability() {
        let tmp = worksheet_example();
        let root = tmp.path();
        let k0 = key(root);
        assert_eq!(k0.len(), 64);
        // Notebook, data and documentation edits keep the key.
        write(
            root,
            &[
                ("growth.ipynb", "{\"cells\": [1]}"),
                ("data/new.csv", "a,b\n"),
                ("docs/notes.md", "x"),
            ],
        );
        assert_eq!(key(root), k0);
        // launch.toml edits outside [build] keep it too.
        let lt = std::fs::read_to_string(root.join("launch.toml")).unwrap();
        write(
            root,
            &[("launch.toml", &lt.replace("Bacterial", "Microbial"))],
        );
        assert_eq!(key(root), k0);
        // The package tree installed by `-e .` is an input.
        write(root, &[("lib/growth/__init__.py", "X = 1\n")]);
        let k1 = key(root);
        assert_ne!(k1, k0);
        // So is the requirements file.
        write(root, &[("binder/requirements.txt", "-e .\nscipy>=1.11\n")]);
        let k2 = key(root);
        assert_ne!(k2, k1);
        // And the base image and the extra CA option.
        let other_base = Options {
            base_image: "nbforge/base:other".into(),
            ..Options::default()
        };
        assert_ne!(analyze_at(root, &other_base).unwrap().environment_key, k2);
        let ca = Options {
            extra_ca: Some(b"-----BEGIN CERTIFICATE-----\n".to_vec()),
            ..Options::default()
        };
        assert_ne!(analyze_at(root, &ca).unwrap().environment_key, k2);
        let a = analyze_at(root, &Options::default()).unwrap();
        assert!(!a.whole_tree);
        assert!(
            a.inputs.iter().all(|i| !i.ends_with(".ipynb")),
            "{:?}",
            a.inputs
        );
        assert!(a.inputs.contains(&"setup.py".to_owned()));
    }

    #[test]
    fn spec_key_includes_referenced_requirement_files() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            root,
            &[
                (
                    "requirements.txt",
                    "-r requirements/base.txt\n-c constraints.txt\nnumpy\n",
                ),
                ("requirements/base.txt", "pandas\n"),
                ("constraints.txt", "pandas<3\n"),
                ("notes.ipynb", "{}"),
            ],
        );
        let a = analyze_at(root, &Options::default()).unwrap();
        for f in [
            "requirements.txt",
            "requirements/base.txt",
            "constraints.txt",
        ] {
            assert!(a.inputs.contains(&f.to_owned()), "{f}: {:?}", a.inputs);
        }
        let k0 = a.environment_key;
        write(root, &[("requirements/base.txt", "pandas>=2\n")]);
        assert_ne!(key(root), k0);
        let missing = err_text(&[("requirements.txt", "numpy\n-r nothere.txt\n")]);
        assert!(missing.starts_with("requirements.txt:2:1:"), "{missing}");
    }

    #[test]
    fn spec_post_build_covers_whole_tree_unless_narrowed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        write(
            root,
            &[
                ("requirements.txt", "numpy\n"),
                ("postBuild", "#!/bin/sh\necho hi\n"),
                ("a.ipynb", "{}"),
            ],
        );
        let a = analyze_at(root, &Options::default()).unwrap();
        assert!(a.whole_tree);
        assert!(
            a.warnings
                .iter()
                .any(|w| w.contains("postBuild") && w.contains("[build] inputs")),
            "{:?}",
            a.warnings
        );
        write(root, &[("a.ipynb", "{\"x\": 1}")]);
        assert_ne!(
            key(root),
            a.environment_key,
            "whole-tree key follows every file"
        );

        // The apt + postBuild example narrows it with [build] inputs.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        copy_dir(&examples().join("apt-postbuild"), root);
        let a = analyze_at(root, &Options::default()).unwrap();
        assert!(!a.whole_tree);
        assert!(a.inputs.contains(&"binder/reference.fa".to_owned()));
        write(
            root,
            &[
                ("data/samples.csv", "sample,reads\nb,2\n"),
                ("x.ipynb", "{}"),
            ],
        );
        assert_eq!(key(root), a.environment_key);
        write(root, &[("binder/reference.fa", ">chr2\nTT\n")]);
        assert_ne!(key(root), a.environment_key);
    }
}
