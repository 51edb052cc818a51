//! What a session does with a repository bundle before Jupyter starts (see [`super::Checkout`]):
//! the script that clones or fast-forwards it in the home, and how its outcome is read back
//! from the session's log. Any backend that can run a command before Jupyter uses them.

/// What the session does with the bundle before Jupyter starts (POSIX `sh`, run as the
/// user in the home): clone it into the checkout folder on first launch; later, leave a
/// checkout with changes or other commits alone, or fast-forward a clean one that is
/// behind. It prints one `nbforge-checkout: <outcome>` line. Its inputs come from
/// `NBFORGE_CHECKOUT_*` variables (folder, commit, branch, remote URL) and the bundle's path.
pub const CHECKOUT_SCRIPT: &str = r#"nbforge_checkout() {
  b="$1"; d="$HOME/$NBFORGE_CHECKOUT_DIR"; c="$NBFORGE_CHECKOUT_COMMIT"
  say() { echo "nbforge-checkout: $*"; }
  command -v git >/dev/null 2>&1 || { say "skipped: git is not in the environment"; return; }
  if [ ! -e "$d" ]; then
    if git init -q "$d" 2>/dev/null \
       && git -C "$d" fetch -q "$b" "+refs/nbforge/launch:refs/nbforge/launch" 2>/dev/null \
       && if [ -n "$NBFORGE_CHECKOUT_BRANCH" ]; then git -C "$d" checkout -q -B "$NBFORGE_CHECKOUT_BRANCH" "$c"; \
          else git -C "$d" checkout -q --detach "$c"; fi 2>/dev/null; then
      git -C "$d" remote add origin "$NBFORGE_CHECKOUT_REMOTE"
      say "cloned at $c"
    else
      rm -rf "$d"
      say "failed: the repository could not be checked out"
    fi
  elif [ ! -d "$d/.git" ]; then
    say "left alone: $NBFORGE_CHECKOUT_DIR is not a git checkout"
  elif [ -n "$(git -C "$d" status --porcelain 2>/dev/null)" ]; then
    say "left alone: $NBFORGE_CHECKOUT_DIR has uncommitted changes"
  else
    h=$(git -C "$d" rev-parse HEAD 2>/dev/null)
    if [ "$h" = "$c" ]; then
      say "up to date at $c"
    elif git -C "$d" fetch -q "$b" "+refs/nbforge/launch:refs/nbforge/launch" 2>/dev/null \
         && git -C "$d" merge-base --is-ancestor HEAD "$c" 2>/dev/null \
         && git -C "$d" merge -q --ff-only "$c" >/dev/null 2>&1; then
      say "fast-forwarded to $c"
    else
      say "left alone: $NBFORGE_CHECKOUT_DIR has commits that are not in $c"
    fi
  fi
}"#;

/// The outcome line a session's log carries, without its prefix.
pub fn outcome(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("nbforge-checkout: "))
        .map(|s| crate::text::truncate(s, 200).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_outcome_is_the_last_checkout_line() {
        assert_eq!(
            outcome("x\nnbforge-checkout: cloned at abc\n[I] Jupyter").as_deref(),
            Some("cloned at abc")
        );
        assert_eq!(outcome("nothing"), None);
    }
}
