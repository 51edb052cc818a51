//! File parameters (`counts_file = "data/counts.csv"  # type: file`): their values are
//! files of the user's `~/data/` folder, named by their file name alone, and injected as
//! the file's path inside the run's container (`/home/jovyan/data/<name>`).
//!
//! The names of files in `~/data/` are checked here, for the form's values and for
//! uploads alike: one file name, never a path.

/// The user's data folder inside a run's (and a session's) container: `data/` of the
/// home, which is mounted at `/home/jovyan`.
pub const DATA_DIR: &str = "/home/jovyan/data";

/// The longest file name accepted, in bytes (the usual file system limit).
pub const MAX_NAME_BYTES: usize = 255;

/// Checks that `name` is one plain file name for `~/data/`: not empty, at most
/// [`MAX_NAME_BYTES`] bytes, no `/` or `\`, no `..`, no control characters, and not
/// hidden (a leading `.`). The error says what is wrong with it.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("the file has no name".into());
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "the file name is longer than {MAX_NAME_BYTES} bytes"
        ));
    }
    let shown = || crate::text::truncate(name, 80).escape_debug().to_string();
    if name.contains("..") {
        return Err(format!(
            "the file name `{}` contains `..`: files go straight into ~/data, give a plain name",
            shown()
        ));
    }
    if name.contains(['/', '\\']) {
        return Err(format!(
            "the file name `{}` contains a `/` or `\\`: files go straight into ~/data, give a plain name",
            shown()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!(
            "the file name `{}` contains control characters",
            shown()
        ));
    }
    if name.starts_with('.') {
        return Err(format!(
            "the file name `{}` starts with `.` (a hidden file)",
            shown()
        ));
    }
    Ok(())
}

/// The file name a form or API value picks: a plain name (`counts.csv`), or the same
/// file written as `data/counts.csv`, `~/data/counts.csv` or `/home/jovyan/data/counts.csv`
/// (how a run's stored values read back).
pub fn picked_name(raw: &str) -> Result<&str, String> {
    let raw = raw.trim();
    let name = ["/home/jovyan/data/", "~/data/", "data/"]
        .iter()
        .find_map(|prefix| raw.strip_prefix(prefix))
        .unwrap_or(raw);
    check_name(name)?;
    Ok(name)
}

/// The path inside the container of the file `name` of `~/data/`.
pub fn container_path(name: &str) -> String {
    format!("{DATA_DIR}/{name}")
}

/// The file name of `~/data/` a value injected for a file parameter names, if it is one.
pub fn name_in_data(path: &str) -> Option<&str> {
    let name = path.strip_prefix(DATA_DIR)?.strip_prefix('/')?;
    check_name(name).ok().map(|()| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_plain_file_names() {
        for ok in ["counts.csv", "Zählung 2026 (v2).tsv", "a", "n.a"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        let refused = [
            ("", "no name"),
            ("   ", "no name"),
            ("../etc/passwd", "`..`"),
            ("..", "`..`"),
            ("x..", "`..`"),
            ("a/b.csv", "`/`"),
            ("a\\b.csv", "`/`"),
            ("/abs.csv", "`/`"),
            ("bad\nname", "control"),
            ("bell\u{7}", "control"),
            (".bashrc", "hidden"),
        ];
        for (name, why) in refused {
            let e = check_name(name).unwrap_err();
            assert!(e.contains(why), "{name:?}: {e}");
        }
        let long = "x".repeat(MAX_NAME_BYTES + 1);
        assert!(check_name(&long).unwrap_err().contains("longer"));
        assert_eq!(check_name(&long[1..]), Ok(()));
    }

    #[test]
    fn picked_values_name_a_file_of_data() {
        assert_eq!(picked_name("counts.csv"), Ok("counts.csv"));
        assert_eq!(picked_name(" data/counts.csv "), Ok("counts.csv"));
        assert_eq!(picked_name("~/data/counts.csv"), Ok("counts.csv"));
        assert_eq!(
            picked_name("/home/jovyan/data/counts.csv"),
            Ok("counts.csv")
        );
        assert!(picked_name("/home/jovyan/data/../.ssh/id").is_err());
        assert!(picked_name("/etc/passwd").is_err());
        assert!(picked_name("data/sub/x.csv").is_err());
        assert_eq!(container_path("counts.csv"), "/home/jovyan/data/counts.csv");
        assert_eq!(
            name_in_data("/home/jovyan/data/counts.csv"),
            Some("counts.csv")
        );
        assert_eq!(name_in_data("data/counts.csv"), None);
        assert_eq!(name_in_data("/home/jovyan/data/../x"), None);
    }
}
