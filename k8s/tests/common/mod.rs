//! Helpers shared by the integration tests: golden files and shell-like argument splitting.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};

/// `k8s/testdata/<sub>`.
pub fn testdata(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(sub)
}

/// Compares `actual` with the golden file; `REFRESH_GOLDEN=1` rewrites it instead.
/// Returns a message for a mismatch so a test can report every stale file at once.
pub fn check_golden(path: &Path, actual: &str) -> Option<String> {
    if std::env::var_os("REFRESH_GOLDEN").is_some_and(|v| v == "1") {
        std::fs::write(path, actual).expect("write golden");
        return None;
    }
    match std::fs::read_to_string(path) {
        Ok(expected) if expected == actual => None,
        Ok(expected) => Some(format!(
            "{} is stale (REFRESH_GOLDEN=1 rewrites it)\n--- expected\n{expected}\n--- actual\n{actual}",
            path.display()
        )),
        Err(err) => Some(format!(
            "{}: {err} (REFRESH_GOLDEN=1 writes it)",
            path.display()
        )),
    }
}

/// Files in `dir` whose name ends with `suffix`, sorted.
pub fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read testdata dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// Splits a command line on whitespace; `'...'` and `"..."` quote (so `''` is an empty
/// argument). `#` starts a comment line.
pub fn split_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    for line in line.lines().filter(|l| !l.trim_start().starts_with('#')) {
        let mut current = String::new();
        let mut in_arg = false;
        let mut quote: Option<char> = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => current.push(c),
                (None, '\'' | '"') => {
                    quote = Some(c);
                    in_arg = true;
                }
                (None, c) if c.is_whitespace() => {
                    if in_arg {
                        args.push(std::mem::take(&mut current));
                        in_arg = false;
                    }
                }
                (None, c) => {
                    current.push(c);
                    in_arg = true;
                }
            }
        }
        if in_arg {
            args.push(current);
        }
    }
    args
}
