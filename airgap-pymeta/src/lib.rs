//! A Python distribution's identity and core metadata (`METADATA`, `PKG-INFO`: RFC 822
//! headers), read for what airgap reports of it: its package URL and its licence, by one rule
//! shared by every source that meets a distribution (the pip source reads pip's `--report`,
//! the conda source installed `.dist-info` directories), so that both say the same of the
//! same wheel.
//!
//! Light (the `purl` crate only), so that a plugin can depend on it.
#![deny(missing_docs)]

/// The package URL of a distribution on PyPI (`pkg:pypi/typing-extensions@4.12.2`): the
/// name normalised as the purl spec's `pypi` type says.
pub fn pypi_purl(name: &str, version: &str) -> Option<String> {
    purl::PurlBuilder::new(purl::PackageType::PyPI, name)
        .with_version(version)
        .build()
        .ok()
        .map(|p| p.to_string())
}

/// The values of the header `name` (case-insensitive), in order, with continuation lines
/// joined by newlines. Reading stops at the first empty line: the body is the description.
pub fn fields(text: &str, name: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(value) = current.as_mut() {
                value.push('\n');
                value.push_str(line.trim());
            }
            continue;
        }
        out.extend(current.take());
        current = line
            .split_once(':')
            .filter(|(key, _)| key.trim().eq_ignore_ascii_case(name))
            .map(|(_, value)| value.trim().to_string());
    }
    out.extend(current);
    out
}

/// The first value of the header `name`, if any.
pub fn field(text: &str, name: &str) -> Option<String> {
    fields(text, name).into_iter().next()
}

/// The licence `METADATA` text declares, by [`license_of`].
pub fn license(text: &str) -> Option<String> {
    let classifiers = fields(text, "Classifier");
    license_of(
        field(text, "License-Expression").as_deref(),
        field(text, "License").as_deref(),
        &classifiers.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

/// Longest `License:` value taken as a licence's name; longer ones are the licence's text.
const MAX_LICENSE_NAME: usize = 100;

/// The licence a distribution declares, never guessed: `License-Expression` (PEP 639, an
/// SPDX expression) when present; else a `License` that is a name (one short line, not
/// `UNKNOWN`: many wheels put the whole licence text there); else the names of its
/// `License ::` classifiers (`License :: OSI Approved :: MIT License` gives `MIT License`),
/// joined by `, ` as the metadata lists them; else nothing, which reads as unknown.
pub fn license_of(
    expression: Option<&str>,
    license: Option<&str>,
    classifiers: &[&str],
) -> Option<String> {
    if let Some(e) = expression.map(str::trim).filter(|e| !e.is_empty()) {
        return Some(e.to_string());
    }
    if let Some(l) = license.map(str::trim).filter(|l| is_license_name(l)) {
        return Some(l.to_string());
    }
    let names: Vec<&str> = classifiers
        .iter()
        .filter_map(|c| c.trim().strip_prefix("License ::"))
        .filter_map(|c| c.rsplit("::").next().map(str::trim))
        .filter(|name| !name.is_empty() && *name != "OSI Approved")
        .collect();
    (!names.is_empty()).then(|| names.join(", "))
}

/// Whether a `License` value names a licence rather than holding its text or nothing.
fn is_license_name(value: &str) -> bool {
    !value.is_empty()
        && !value.contains('\n')
        && value.len() <= MAX_LICENSE_NAME
        && !value.eq_ignore_ascii_case("unknown")
        && !value.eq_ignore_ascii_case("none")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_expression_wins() {
        let text = "Metadata-Version: 2.4\nName: x\nLicense-Expression: MIT OR Apache-2.0\n\
                    License: BSD\nClassifier: License :: OSI Approved :: BSD License\n\nbody";
        assert_eq!(license(text).as_deref(), Some("MIT OR Apache-2.0"));
    }

    #[test]
    fn a_licence_text_gives_way_to_the_classifiers() {
        let text = "Name: numpy\nLicense: Copyright (c) 2005, NumPy Developers.\n        All rights reserved.\n\
                    Classifier: Programming Language :: Python\n\
                    Classifier: License :: OSI Approved :: BSD License\n\
                    Classifier: License :: OSI Approved :: Apache Software License\n";
        assert_eq!(
            license(text).as_deref(),
            Some("BSD License, Apache Software License")
        );
    }

    #[test]
    fn a_short_name_is_kept_and_unknown_is_nothing() {
        assert_eq!(
            license("Name: a\nLicense: BSD-3-Clause\n").as_deref(),
            Some("BSD-3-Clause")
        );
        assert_eq!(license("Name: a\nLicense: UNKNOWN\n"), None);
        assert_eq!(
            license("Name: a\nClassifier: License :: OSI Approved\n"),
            None
        );
    }

    #[test]
    fn pypi_names_are_normalised() {
        assert_eq!(
            pypi_purl("Typing_Extensions", "4.12.2").as_deref(),
            Some("pkg:pypi/typing-extensions@4.12.2")
        );
    }

    #[test]
    fn the_body_is_not_read() {
        let text = "Name: a\n\nLicense: MIT\n";
        assert_eq!(license(text), None);
        assert_eq!(field("Name: a\nname: b\n", "NAME").as_deref(), Some("a"));
    }
}
