//! Module layering (drawn in `src/lib.rs`, listed in `airlock::LAYERS`): every `crate::` path in
//! `src/` must point to a module in a lower layer, or to one beside it in the same layer
//! without a cycle. `src/main.rs`, `src/cli/` and `src/bin/` are `main` (the binaries) and may
//! use any `airlock::` module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file under `src/` belongs to (`src/gate/execute.rs` -> `gate`).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel
        .components()
        .next()
        .and_then(|c| c.as_os_str().to_str())
        .unwrap_or("");
    match first {
        "main.rs" | "bin" | "cli" => "main".into(),
        f => f.trim_end_matches(".rs").into(),
    }
}

/// Top-level modules a file names through `crate::x` (or `airlock::x` from main).
fn targets(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find(prefix) {
            let after = &rest[i + prefix.len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            } else if let Some(group) = after.strip_prefix('{') {
                // `crate::{a, b::c}`
                let inner = group.split('}').next().unwrap_or("");
                for part in inner.split(',') {
                    let n: String = part
                        .trim()
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !n.is_empty() {
                        out.insert(n);
                    }
                }
            }
            rest = after;
        }
    }
    out
}

#[test]
fn every_crate_path_points_down_the_layers() {
    let layer: BTreeMap<&str, usize> = airlock::LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, mods)| mods.iter().map(move |m| (*m, i)))
        .collect();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut up = Vec::new();
    let mut unplaced = BTreeSet::new();
    let mut same_layer: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for f in &files {
        let from = module_of(&src, f);
        if from == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(f).expect("read");
        let prefix = if from == "main" {
            "airlock::"
        } else {
            "crate::"
        };
        let Some(&lf) = layer.get(from.as_str()) else {
            unplaced.insert(from.clone());
            continue;
        };
        for to in targets(&text, prefix) {
            if to == from || to == "LAYERS" || to == "install_crypto_provider" {
                continue;
            }
            let Some(&lt) = layer.get(to.as_str()) else {
                unplaced.insert(to.clone());
                continue;
            };
            if lt < lf {
                up.push(format!(
                    "{}: {from} (layer {lf}) -> {to} (layer {lt})",
                    f.strip_prefix(&src).unwrap_or(f).display()
                ));
            } else if lt == lf {
                same_layer.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    assert!(
        unplaced.is_empty(),
        "modules missing from airlock::LAYERS: {unplaced:?}"
    );
    assert!(
        up.is_empty(),
        "paths pointing up the layers:\n{}",
        up.join("\n")
    );
    // Within a layer: no cycle.
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            return Some(path[i..].to_vec());
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for m in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in same_layer.keys() {
        if let Some(cycle) = visit(n, &same_layer, &mut Vec::new(), &mut done) {
            panic!("a cycle within one layer: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_grouped_and_inline_paths() {
    let t = targets(
        "use crate::{gate::Gate, wire};\nlet x = crate::rules::Action::Allow; // crate::admin\n",
        "crate::",
    );
    assert_eq!(t.into_iter().collect::<Vec<_>>(), ["gate", "rules", "wire"]);
}
