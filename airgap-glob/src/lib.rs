//! The one dialect of the `include` and `exclude` patterns every source takes (the archive's
//! `exclude` of a path entry, `[sources.conda] exclude`/`base_exclude`, `[sources.files]`,
//! `[sources.syslibs] include`/`exclude`/`always`), as `.gitignore` and `tar --exclude` users
//! expect:
//!
//! - a pattern without a `/` matches a name at any depth (`__pycache__`, `*.pyc`, `libcuda.so.*`);
//! - a pattern with a `/` (or starting with one) matches the path from the root it is relative
//!   to (`lib/python3.11/test`, `/include`); a leading `./` and a trailing `/` are ignored;
//! - `*`, `?` and `[...]` stay within one name; `**` crosses directories (`**/tests`);
//! - a pattern that matches a directory matches everything under it.
//!
//! Matching is byte-exact and case-sensitive, on `/`-separated relative paths.
//!
//! Architecture invariant: this crate only matches; it reads no file system and knows no
//! source's keys (callers name the key in their errors).

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

/// A set of patterns in airgap's dialect.
#[derive(Debug, Clone)]
pub struct Patterns {
    /// Patterns without a `/`, matched against each name of a path.
    names: GlobSet,
    /// Patterns with a `/`, matched against the path and each of its ancestors.
    paths: GlobSet,
    empty: bool,
}

/// A pattern that is not a valid glob.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid pattern `{pattern}`: {reason}")]
pub struct PatternError {
    /// The pattern as given.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

impl Patterns {
    /// Compile `patterns`.
    pub fn new<S: AsRef<str>>(patterns: &[S]) -> Result<Patterns, PatternError> {
        let mut names = GlobSetBuilder::new();
        let mut paths = GlobSetBuilder::new();
        for p in patterns {
            let given = p.as_ref();
            let bad = |reason: String| PatternError {
                pattern: given.to_owned(),
                reason,
            };
            let trimmed = given.strip_prefix("./").unwrap_or(given);
            let trimmed = trimmed.trim_end_matches('/');
            let (anchored, body) = match trimmed.strip_prefix('/') {
                Some(rest) => (true, rest),
                None => (trimmed.contains('/'), trimmed),
            };
            if body.is_empty() {
                return Err(bad("it matches nothing".into()));
            }
            let glob = GlobBuilder::new(body)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| bad(e.kind().to_string()))?;
            if anchored {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let build = |b: GlobSetBuilder| {
            b.build().map_err(|e| PatternError {
                pattern: patterns
                    .iter()
                    .map(|p| p.as_ref())
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: e.to_string(),
            })
        };
        Ok(Patterns {
            names: build(names)?,
            paths: build(paths)?,
            empty: patterns.is_empty(),
        })
    }

    /// No patterns at all.
    pub fn is_empty(&self) -> bool {
        self.empty
    }

    /// Whether `rel` (a `/`-separated path relative to the patterns' root) or a directory it
    /// is under matches.
    pub fn matches(&self, rel: &str) -> bool {
        if self.empty {
            return false;
        }
        let rel = rel.trim_matches('/');
        if rel.is_empty() {
            return false;
        }
        rel.split('/').any(|name| self.names.is_match(name))
            || ancestors(rel).any(|p| self.paths.is_match(p))
    }
}

/// `a/b/c`, `a/b`, `a`.
fn ancestors(rel: &str) -> impl Iterator<Item = &str> {
    let mut end = Some(rel.len());
    std::iter::from_fn(move || {
        let e = end?;
        let p = &rel[..e];
        end = p.rfind('/');
        Some(p)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(patterns: &[&str], rel: &str) -> bool {
        Patterns::new(patterns).expect("valid").matches(rel)
    }

    #[test]
    fn a_bare_name_matches_at_any_depth_and_everything_under_it() {
        assert!(m(&["__pycache__"], "__pycache__"));
        assert!(m(&["__pycache__"], "lib/python3.11/__pycache__/x.pyc"));
        assert!(m(&["*.pyc"], "a/b/c.pyc"));
        assert!(!m(&["*.pyc"], "a/b/c.py"));
        assert!(m(&["libcuda.so.*"], "libcuda.so.1"));
        assert!(!m(&["test"], "tests/x"));
    }

    #[test]
    fn a_pattern_with_a_slash_is_anchored_and_star_stays_in_one_name() {
        assert!(m(&["lib/*.a"], "lib/libx.a"));
        assert!(!m(&["lib/*.a"], "lib/sub/libx.a"));
        assert!(!m(&["lib/*.a"], "env/lib/libx.a"));
        assert!(m(&["lib/python3.11/test"], "lib/python3.11/test/test_x.py"));
        assert!(m(&["**/tests"], "lib/python3.11/site-packages/x/tests"));
        assert!(m(&["**/tests"], "tests"));
        assert!(m(&["/include"], "include/Python.h"));
        assert!(!m(&["/include"], "lib/numpy/include"));
        assert!(m(&["./share/"], "share/man"));
    }

    #[test]
    fn bad_patterns_are_errors_naming_the_pattern() {
        let e = Patterns::new(&["["]).expect_err("invalid");
        assert_eq!(e.pattern, "[");
        assert!(Patterns::new(&["/"]).is_err());
        assert!(!Patterns::new::<&str>(&[]).expect("empty").matches("a"));
    }
}
