//! R environments from Debian: which R packages a repository asks for (`install.R` calls to
//! `install.packages` and `BiocManager::install`, `DESCRIPTION`'s `Depends`, `Imports` and
//! `LinkingTo`), and the two fixed helper files the image build runs: a shell script that
//! installs Debian's `r-cran-<name>` / `r-bioc-<name>` package for each of them where Debian
//! has one, and an R wrapper that runs `install.R` so that packages already installed are not
//! installed again (only what is left goes to the CRAN or Bioconductor mirror).
//!
//! Package names are read statically (nothing is evaluated) and must pass R's package-name
//! rule before they reach a Dockerfile `RUN` line; anything else is left to `install.R`.

use std::sync::LazyLock;

use regex::Regex;

/// The R that Debian bookworm provides (`r-base-core` 4.2.2).
pub const DEBIAN_R: &str = "4.2";

/// Build-context name of the Debian mapping script.
pub(super) const APT_SCRIPT: &str = "nbforge-r-debian.sh";
/// Build-context name of the `install.R` wrapper.
pub(super) const INSTALL_WRAPPER: &str = "nbforge-install.R";
/// Where both helpers live in the image.
pub(super) const HELPER_DIR: &str = "/usr/local/lib/nbforge";

/// Most R packages read from one repository (more are left to `install.R`).
const MAX_PACKAGES: usize = 500;

/// Where an R package is expected to come from; decides which Debian prefix is tried first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Repo {
    Cran,
    Bioc,
}

/// An R package a repository asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RPackage {
    pub name: String,
    pub repo: Repo,
}

impl RPackage {
    /// `cran:<name>` / `bioc:<name>`: the mapping script's argument.
    pub(super) fn arg(&self) -> String {
        let prefix = match self.repo {
            Repo::Cran => "cran",
            Repo::Bioc => "bioc",
        };
        format!("{prefix}:{}", self.name)
    }

    /// The Debian packages tried for it, in order.
    pub fn debian_names(&self) -> [String; 2] {
        let lower = self.name.to_ascii_lowercase();
        let (cran, bioc) = (format!("r-cran-{lower}"), format!("r-bioc-{lower}"));
        match self.repo {
            Repo::Cran => [cran, bioc],
            Repo::Bioc => [bioc, cran],
        }
    }
}

static R_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$").expect("valid regex"));
static INSTALL_CALL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?s)(?:\butils::)?\b(install\.packages|BiocManager::install)\s*\(\s*(?:pkgs\s*=\s*)?(c\s*\(([^)]*)\)|"([^"]*)"|'([^']*)')"#,
    )
    .expect("valid regex")
});
static STRING: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r#""([^"]*)"|'([^']*)'"#).expect("valid regex"));

/// Packages that come with R itself and are never installed.
const BASE_PACKAGES: &[&str] = &[
    "R",
    "base",
    "compiler",
    "datasets",
    "grDevices",
    "graphics",
    "grid",
    "methods",
    "parallel",
    "splines",
    "stats",
    "stats4",
    "tcltk",
    "tools",
    "utils",
];

/// True for a valid R package name (letters, digits and dots, starting with a letter, not
/// ending with a dot, at least two characters).
pub fn valid_name(name: &str) -> bool {
    R_NAME.is_match(name)
}

fn push(out: &mut Vec<RPackage>, name: &str, repo: Repo) {
    if !valid_name(name)
        || BASE_PACKAGES.contains(&name)
        || out.len() >= MAX_PACKAGES
        || out.iter().any(|p| p.name == name)
    {
        return;
    }
    out.push(RPackage {
        name: name.to_owned(),
        repo,
    });
}

/// R source without comments (`#` outside string literals), so that commented-out calls are
/// not read.
fn strip_comments(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut quote: Option<char> = None;
    let mut comment = false;
    let mut escaped = false;
    for ch in src.chars() {
        if comment {
            if ch == '\n' {
                comment = false;
                out.push(ch);
            }
            continue;
        }
        match quote {
            Some(q) => {
                if escaped {
                    escaped = false;
                } else if ch == '\\' {
                    escaped = true;
                } else if ch == q {
                    quote = None;
                }
            }
            None if ch == '#' => {
                comment = true;
                continue;
            }
            None if ch == '"' || ch == '\'' => quote = Some(ch),
            None => {}
        }
        out.push(ch);
    }
    out
}

/// The packages named in `install.packages(...)` and `BiocManager::install(...)` calls with
/// literal names (one string or `c(...)` of strings). `library()` and `require()` install
/// nothing and are not read.
pub fn install_r_packages(text: &str) -> Vec<RPackage> {
    let code = strip_comments(text);
    let mut out = Vec::new();
    for cap in INSTALL_CALL.captures_iter(&code) {
        let repo = if &cap[1] == "install.packages" {
            Repo::Cran
        } else {
            Repo::Bioc
        };
        if let Some(list) = cap.get(3) {
            for s in STRING.captures_iter(list.as_str()) {
                let name = s.get(1).or_else(|| s.get(2)).map_or("", |m| m.as_str());
                push(&mut out, name.trim(), repo);
            }
        } else if let Some(one) = cap.get(4).or_else(|| cap.get(5)) {
            push(&mut out, one.as_str().trim(), repo);
        }
    }
    out
}

/// The packages of `DESCRIPTION`'s `Depends`, `Imports` and `LinkingTo` fields (a Debian
/// control file: continuation lines start with white space), without version constraints.
pub fn description_packages(text: &str) -> Vec<RPackage> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some((_, v)) = fields.last_mut() {
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            fields.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let mut out = Vec::new();
    for (k, v) in &fields {
        if !matches!(k.as_str(), "Depends" | "Imports" | "LinkingTo") {
            continue;
        }
        for item in v.split(',') {
            let name = item.split('(').next().unwrap_or("").trim();
            push(&mut out, name, Repo::Cran);
        }
    }
    out
}

/// The mapping script: for each `cran:<name>` / `bioc:<name>` argument, installs the first of
/// `r-cran-<name>` / `r-bioc-<name>` (lower case; Bioconductor first for `bioc:`) that Debian
/// has, and says which packages are left to `install.R` and the CRAN mirror. Runs as root after
/// `apt-get update`; fixed text, the names are validated arguments.
pub(super) fn apt_script() -> String {
    r#"#!/bin/sh
# Installs Debian's package of each R package given as cran:<Name> or bioc:<Name>:
# r-cran-<name> or r-bioc-<name> (lower case), whichever Debian has, Bioconductor first for
# bioc:. The packages Debian does not have are left to install.R and the CRAN mirror.
set -eu
found=""
for spec in "$@"; do
    repo=${spec%%:*}
    name=${spec#*:}
    lower=$(printf '%s' "$name" | tr 'A-Z' 'a-z')
    if [ "$repo" = bioc ]; then
        order="r-bioc-$lower r-cran-$lower"
    else
        order="r-cran-$lower r-bioc-$lower"
    fi
    pkg=""
    for candidate in $order; do
        if apt-cache show --no-all-versions "$candidate" 2>/dev/null | grep -q '^Package:'; then
            pkg=$candidate
            break
        fi
    done
    if [ -n "$pkg" ]; then
        echo "nbforge: R package $name from Debian ($pkg)"
        found="$found $pkg"
    else
        echo "nbforge: R package $name is not packaged by Debian; left to the CRAN/Bioconductor mirror"
    fi
done
if [ -n "$found" ]; then
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $found
fi
"#
    .to_owned()
}

/// The `install.R` wrapper: `install.packages()` and `BiocManager::install()` skip the
/// packages already installed (from Debian) and install only the rest, without updating or
/// asking; then the repository's script (the first argument) runs as it is.
pub(super) fn install_wrapper() -> String {
    r#"# Runs a repository's install.R so that packages already installed (from Debian) are not
# installed again: install.packages() and BiocManager::install() only install what is left.
# Warnings are printed when they happen, not after the script.
options(warn = 1)
.nbforge_left <- function(pkgs) {
    pkgs <- as.character(pkgs)
    pkgs[!vapply(pkgs, function(p) nzchar(system.file(package = p)), logical(1))]
}
# A package that no source had ends the build, named (R itself only warns). Only package
# names are checked: files (`pkg_1.0.tar.gz`) and GitHub repositories (`user/repo`) are
# installed under other names.
.nbforge_check <- function(rest, from) {
    rest <- rest[grepl("^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$", rest)]
    missing <- .nbforge_left(rest)
    if (length(missing) > 0L) {
        message("nbforge: R package(s) found in no source (Debian, ", from, "): ",
                paste(missing, collapse = ", "))
        quit(save = "no", status = 1)
    }
}
install.packages <- function(pkgs, ...) {
    rest <- .nbforge_left(pkgs)
    done <- setdiff(as.character(pkgs), rest)
    if (length(done) > 0L) message("nbforge: already installed: ", paste(done, collapse = ", "))
    if (length(rest) == 0L) return(invisible(NULL))
    utils::install.packages(rest, ...)
    .nbforge_check(rest, paste("CRAN", getOption("repos")[["CRAN"]]))
}
if (requireNamespace("BiocManager", quietly = TRUE)) local({
    ns <- asNamespace("BiocManager")
    real <- get("install", envir = ns)
    shim <- function(pkgs = character(), ..., update = FALSE, ask = FALSE) {
        rest <- .nbforge_left(pkgs)
        done <- setdiff(as.character(pkgs), rest)
        if (length(done) > 0L) message("nbforge: already installed: ", paste(done, collapse = ", "))
        if (length(pkgs) > 0L && length(rest) == 0L) return(invisible(character()))
        out <- real(rest, ..., update = update, ask = ask)
        .nbforge_check(rest, "Bioconductor or CRAN")
        invisible(out)
    }
    unlockBinding("install", ns)
    assign("install", shim, envir = ns)
    lockBinding("install", ns)
})
script <- commandArgs(trailingOnly = TRUE)[1]
source(script, local = globalenv(), echo = FALSE)
"#
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(p: &[RPackage]) -> Vec<(&str, Repo)> {
        p.iter().map(|p| (p.name.as_str(), p.repo)).collect()
    }

    #[test]
    fn install_r_calls_are_read_without_evaluating() {
        let text = r#"
# install.packages("commented")
install.packages("jsonlite")
install.packages(c("dplyr", 'ggplot2',
                   "data.table"), repos = "https://example.org")
utils::install.packages(pkgs = "tidyr")
BiocManager::install("Biobase")
BiocManager::install(c("limma", "edgeR"), update = FALSE)
library(stringr)  # loads, installs nothing
require(purrr)
remotes::install_github("user/repo")
install.packages("bad name; rm -rf /")
install.packages("jsonlite") # twice
x <- "install.packages('inside_a_string')" # not a call, but read: harmless
"#;
        let got = install_r_packages(text);
        assert_eq!(
            names(&got)[..8],
            [
                ("jsonlite", Repo::Cran),
                ("dplyr", Repo::Cran),
                ("ggplot2", Repo::Cran),
                ("data.table", Repo::Cran),
                ("tidyr", Repo::Cran),
                ("Biobase", Repo::Bioc),
                ("limma", Repo::Bioc),
                ("edgeR", Repo::Bioc),
            ]
        );
        assert!(!got.iter().any(|p| p.name == "commented"
            || p.name == "stringr"
            || p.name == "purrr"
            || p.name.contains(' ')));
        assert_eq!(
            got[5].debian_names(),
            ["r-bioc-biobase".to_owned(), "r-cran-biobase".to_owned()]
        );
        assert_eq!(got[3].debian_names()[0], "r-cran-data.table");
        for p in &got {
            for d in p.debian_names() {
                assert!(crate::spec::validate_apt_name(&d), "{d}");
            }
        }
    }

    #[test]
    fn description_fields_are_read() {
        let text = "Package: demo\nVersion: 0.1\nDepends: R (>= 4.0), methods\nImports:\n    jsonlite (>= 1.8),\n    Biobase,\n\tstringi\nSuggests: testthat\nLinkingTo: Rcpp\n";
        let got = description_packages(text);
        assert_eq!(
            names(&got),
            [
                ("jsonlite", Repo::Cran),
                ("Biobase", Repo::Cran),
                ("stringi", Repo::Cran),
                ("Rcpp", Repo::Cran),
            ]
        );
    }

    #[test]
    fn package_names() {
        for ok in ["jsonlite", "data.table", "R6", "Biobase"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "x",
            "1pkg",
            "pkg.",
            "a b",
            "a;b",
            "user/repo",
            "$(id)",
            "ä1",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }
}
