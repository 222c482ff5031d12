//! What a catalog was compiled from, as a verifier can recompute it: each rule file's name and
//! the hex SHA-256 of its bytes, and one digest over them all, the SHA-256 of the lines
//! `sha256sum` prints for them in name order (`cd rules && LC_ALL=C sha256sum *.toml |
//! sha256sum`). The audit log records both at a start and on every rules reload.

use sha2::{Digest, Sha256};

use super::Catalog;

/// A catalog's files and its digest.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CatalogDigest {
    /// Rules in the catalog ([`Catalog::rule_count`]).
    pub rules: usize,
    /// Hex SHA-256 over the files' `sha256sum` lines.
    pub sha256: String,
    /// Each file's name (without its directory) and hex SHA-256, in name order.
    pub files: Vec<(String, String)>,
}

impl CatalogDigest {
    /// The names of the files `self` and `fresh` do not share with the same bytes (added,
    /// removed or edited), sorted.
    pub fn files_changed(&self, fresh: &CatalogDigest) -> Vec<String> {
        let mut out: Vec<String> = self
            .files
            .iter()
            .filter(|f| !fresh.files.contains(f))
            .chain(fresh.files.iter().filter(|f| !self.files.contains(f)))
            .map(|(name, _)| name.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}

/// Each source's name (the last component of its path) and the hex SHA-256 of its text.
pub(super) fn file_digests(sources: &[(String, String)]) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = sources
        .iter()
        .map(|(path, text)| {
            let name = std::path::Path::new(path)
                .file_name()
                .map_or_else(|| path.clone(), |n| n.to_string_lossy().into_owned());
            (name, hex::encode(Sha256::digest(text.as_bytes())))
        })
        .collect();
    files.sort();
    files
}

impl Catalog {
    /// What this catalog was compiled from ([`CatalogDigest`]).
    pub fn digest(&self) -> CatalogDigest {
        let mut all = Sha256::new();
        for (name, sha) in &self.files {
            all.update(format!("{sha}  {name}\n").as_bytes());
        }
        CatalogDigest {
            rules: self.rule_count(),
            sha256: hex::encode(all.finalize()),
            files: self.files.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::CatalogOptions;

    const RULES: &str = "[service]\nname = \"s\"\nhosts = [\"h.test\"]\n\n[[rule]]\ntool = \"s.del\"\n\
                         method = \"DELETE\"\npath = \"/x\"\nclass = \"irreversible\"\naction = \"escalate\"\n";

    /// The digest is what `sha256sum *.toml | sha256sum` prints, so a verifier can recompute it.
    #[test]
    fn the_digest_is_sha256sums_lines() {
        let sources = vec![("/etc/airlock/rules/s.toml".to_string(), RULES.to_string())];
        let c = Catalog::from_sources(&sources, &CatalogOptions::default()).expect("catalog");
        let d = c.digest();
        let file = hex::encode(Sha256::digest(RULES.as_bytes()));
        assert_eq!(d.files, vec![("s.toml".to_string(), file.clone())]);
        let line = format!("{file}  s.toml\n");
        assert_eq!(d.sha256, hex::encode(Sha256::digest(line.as_bytes())));
        assert_eq!(d.rules, 1);
        let edited = vec![
            (sources[0].0.clone(), RULES.replace("escalate", "allow")),
            ("/r/t.toml".to_string(), RULES.replace("\"s\"", "\"t\"")),
        ];
        let e = Catalog::from_sources(&edited, &CatalogOptions::default()).expect("catalog");
        assert_eq!(d.files_changed(&e.digest()), ["s.toml", "t.toml"]);
        assert!(d.files_changed(&d).is_empty());
    }
}
